"""What an error answer lends to :class:`ApiError` (and so to conditions and logs)."""

from __future__ import annotations

import json

from controller.runtime.kube import MAX_ERROR_MESSAGE, ApiError


def test_a_kubernetes_status_lends_its_reason_and_message() -> None:
    status = {"kind": "Status", "reason": "NotFound", "message": 'pods "x" not found'}
    error = ApiError.from_status(status=404, text=json.dumps(status))
    assert (error.reason, error.message) == ("NotFound", 'pods "x" not found')
    assert error.not_found
    assert error.body == status


def test_a_status_message_is_cut_to_a_bound() -> None:
    text = json.dumps({"kind": "Status", "reason": "Invalid", "message": "m" * 10_000})
    assert len(ApiError.from_status(status=422, text=text).message) == MAX_ERROR_MESSAGE


def test_an_answer_that_is_not_a_status_is_never_quoted() -> None:
    """An attacker's kubeconfig aimed at an internal HTTPS service: its answers (an HTML page,
    a JSON document with a ``message``) must not be read back through a condition."""
    for text in (
        "<html>internal admin page: SECRET-1234</html>",
        json.dumps({"message": "SECRET-1234", "reason": "SECRET-1234"}),
        json.dumps(["SECRET-1234"]),
    ):
        error = ApiError.from_status(status=403, text=text)
        assert "SECRET-1234" not in str(error)
        assert error.reason == "Unknown"
        assert error.body == {}
        assert error.status == 403
