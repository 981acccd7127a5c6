"""Parsing cluster-autoscaler's min/max-size annotations (pure logic)."""

from __future__ import annotations

import pytest

from controller.machinepool.autoscaler import (
    MAX_SIZE_ANNOTATION as MAX,
)
from controller.machinepool.autoscaler import (
    MIN_SIZE_ANNOTATION as MIN,
)
from controller.machinepool.autoscaler import (
    AutoscalerBounds,
    InvalidBounds,
    parse_bounds,
)


def test_absent_annotations_mean_no_bounds() -> None:
    assert parse_bounds(None) is None
    assert parse_bounds({"other": "1"}) is None


def test_valid_bounds_and_clamping() -> None:
    bounds = parse_bounds({MIN: "0", MAX: " 5 "})
    assert bounds == AutoscalerBounds(minimum=0, maximum=5)
    assert [bounds.clamp(n) for n in (0, 3, 9)] == [0, 3, 5]
    assert parse_bounds({MIN: "2", MAX: "2"}) == AutoscalerBounds(minimum=2, maximum=2)


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({MIN: "1"}, f"{MIN} is set but {MAX} is not"),
        ({MAX: "1"}, f"{MAX} is set but {MIN} is not"),
        ({MIN: "-1", MAX: "3"}, f"{MIN} is '-1', not a non-negative integer"),
        ({MIN: "1", MAX: "3.5"}, f"{MAX} is '3.5', not a non-negative integer"),
        ({MIN: "1", MAX: "99999999999"}, "not a non-negative integer"),
        ({MIN: "4", MAX: "3"}, "min-size 4 is greater than max-size 3"),
    ],
)
def test_invalid_annotations_say_why(annotations: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidBounds, match=message.replace(".", r"\.")):
        parse_bounds(annotations)
