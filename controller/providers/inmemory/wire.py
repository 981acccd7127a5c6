"""The JSON bodies of the simulator's HTTP API, shared by the server and the client.

- a group spec (``PUT /v1/groups/{name}``)::

    {"cluster": "ns/name", "template": {...}, "templateVersion": "v1", "minSize": 0,
     "maxSize": null, "zones": [], "bootstrapData": "<base64>", "tags": {},
     "ownerTags": {}}

- a group deletion (``DELETE /v1/groups/{name}``), optional: ``{"ownerTags": {}}``

- a group status (the answer to ``PUT`` and ``GET /v1/groups/{name}``)::

    {"name": "...", "desiredCapacity": 3, "templateVersion": "v1",
     "instances": [{"instanceId": "...", "providerId": "inmemory:///zone-a/...",
                    "zone": "zone-a", "state": "running", "version": "v1",
                    "launchedAt": "2025-01-01T00:00:00.000000Z"}]}

- an error: ``{"code": "GroupNotFound", "message": "..."}`` (plus ``retryAfter`` seconds on
  throttling).

The decoders raise :class:`ValueError` naming the first field they cannot use; the server
answers that with 400 ``BadRequest``, the client treats a malformed answer as retryable.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast, get_args

from controller.providers.base import GroupSpec, GroupStatus, Instance, InstanceState

__all__ = [
    "error_body",
    "owner_tags_from_json",
    "spec_from_json",
    "spec_to_json",
    "status_from_json",
    "status_to_json",
]


def spec_to_json(spec: GroupSpec) -> dict[str, Any]:
    return {
        "cluster": spec.cluster,
        "template": dict(spec.template),
        "templateVersion": spec.template_version,
        "minSize": spec.min_size,
        "maxSize": spec.max_size,
        "zones": list(spec.zones),
        "bootstrapData": base64.b64encode(spec.bootstrap_data).decode(),
        "tags": dict(spec.tags),
        "ownerTags": dict(spec.owner_tags),
    }


def spec_from_json(*, name: str, data: object) -> GroupSpec:
    body = _object(data, "body")
    template = body.get("template", {})
    if not isinstance(template, dict):
        raise ValueError("template must be an object")
    zones = body.get("zones", [])
    if not isinstance(zones, list) or not all(isinstance(z, str) for z in zones):
        raise ValueError("zones must be a list of strings")
    tags = _tags(body.get("tags", {}), "tags")
    max_size = body.get("maxSize")
    try:
        bootstrap = base64.b64decode(_str(body.get("bootstrapData", ""), "bootstrapData"))
    except binascii.Error as exc:
        raise ValueError(f"bootstrapData is not base64: {exc}") from exc
    return GroupSpec(
        name=name,
        cluster=_str(body.get("cluster"), "cluster"),
        template=template,
        template_version=_str(body.get("templateVersion"), "templateVersion"),
        min_size=_int(body.get("minSize", 0), "minSize"),
        max_size=None if max_size is None else _int(max_size, "maxSize"),
        zones=tuple(zones),
        bootstrap_data=bootstrap,
        tags=tags,
        owner_tags=_tags(body.get("ownerTags", {}), "ownerTags"),
    )


def owner_tags_from_json(data: object) -> dict[str, str]:
    """The ``ownerTags`` of a group deletion's body (``{}`` when there are none)."""
    return _tags(_object(data, "body").get("ownerTags", {}), "ownerTags")


def status_to_json(status: GroupStatus) -> dict[str, Any]:
    return {
        "name": status.name,
        "desiredCapacity": status.desired_capacity,
        "templateVersion": status.template_version,
        "instances": [
            {
                "instanceId": inst.instance_id,
                "providerId": inst.provider_id,
                "zone": inst.zone,
                "state": inst.state,
                "version": inst.version,
                "launchedAt": inst.launched_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
            for inst in status.instances
        ],
    }


def status_from_json(data: object) -> GroupStatus:
    body = _object(data, "status")
    raw_instances = body.get("instances")
    if not isinstance(raw_instances, list):
        raise ValueError("instances must be a list")
    return GroupStatus(
        name=_str(body.get("name"), "name"),
        desired_capacity=_int(body.get("desiredCapacity"), "desiredCapacity"),
        template_version=_str(body.get("templateVersion"), "templateVersion"),
        instances=[_instance(raw) for raw in raw_instances],
    )


def error_body(*, code: str, message: str, retry_after: float | None = None) -> dict[str, object]:
    body: dict[str, object] = {"code": code, "message": message}
    if retry_after is not None:
        body["retryAfter"] = retry_after
    return body


def _instance(data: object) -> Instance:
    raw = _object(data, "instance")
    state = _str(raw.get("state"), "state")
    if state not in get_args(InstanceState):
        raise ValueError(f"unknown instance state {state!r}")
    launched = _str(raw.get("launchedAt"), "launchedAt")
    try:
        launched_at = datetime.fromisoformat(launched.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"launchedAt {launched!r} is not a timestamp") from exc
    return Instance(
        instance_id=_str(raw.get("instanceId"), "instanceId"),
        provider_id=_str(raw.get("providerId"), "providerId"),
        zone=_str(raw.get("zone"), "zone"),
        state=cast(InstanceState, state),
        version=_str(raw.get("version"), "version"),
        launched_at=launched_at,
    )


def _tags(value: object, key: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f"{key} must map strings to strings")
    return dict(value)


def _object(data: object, what: str) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be a JSON object")
    return data


def _str(value: object, key: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


def _int(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} must be an integer")
    return value
