"""Fault injection for the simulator's API, for chaos tests of the callers.

A :class:`Faults` value says what goes wrong; a :class:`FaultGate` applies it to every API
call of the :class:`~controller.providers.inmemory.simulator.Simulator` (and so of its HTTP
server), in this order:

1. ``latency`` seconds of added delay (on the simulator's clock);
2. ``hang``: the call does not answer while the fault stays on; when it is turned off (or the
   simulator closes) the call fails with a retryable ``ServiceUnavailable`` without having
   done anything, as a request whose client gave up long ago;
3. ``throttle_rate``: a :class:`ThrottledError` (HTTP 429) with ``retry_after`` seconds;
4. ``error_rate``: a retryable ``InternalError`` (HTTP 500) before the call takes effect;
5. the call itself; then ``lost_reply_rate``: a retryable ``InternalError`` *after* the call
   took effect, as when a reply is lost on the way back (callers must be safe to retry).

``operations`` limits the faults to the named operations (``ensure_group``,
``describe_group``, ``list_groups``, ``set_capacity``, ``delete_instance``,
``delete_group``); empty means every operation. Draws come from the gate's own random
generator, so faults never disturb the launch outcomes of a seeded simulator.

Failure: :meth:`Faults.from_json` and the constructor raise :class:`ValueError` for rates
outside 0..1 or negative durations.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from controller.providers.base import RetryableError, ThrottledError
from controller.providers.inmemory.clock import SimClock

__all__ = ["FaultGate", "Faults"]

_FIELDS = {
    "errorRate": "error_rate",
    "throttleRate": "throttle_rate",
    "retryAfterSeconds": "retry_after",
    "latencySeconds": "latency",
    "hang": "hang",
    "lostReplyRate": "lost_reply_rate",
    "operations": "operations",
}


@dataclass(frozen=True, slots=True)
class Faults:
    """What goes wrong with API calls; the default is nothing."""

    error_rate: float = 0.0
    throttle_rate: float = 0.0
    retry_after: float = 1.0
    latency: float = 0.0
    hang: bool = False
    lost_reply_rate: float = 0.0
    operations: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        for name in ("error_rate", "throttle_rate", "lost_reply_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        for name in ("retry_after", "latency"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")

    def applies_to(self, operation: str) -> bool:
        return not self.operations or operation in self.operations

    def to_json(self) -> dict[str, object]:
        values = asdict(self)
        out: dict[str, object] = {key: values[attr] for key, attr in _FIELDS.items()}
        out["operations"] = sorted(self.operations)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Faults:
        """Faults from their JSON form (camelCase keys, missing keys take defaults)."""
        unknown = set(data) - set(_FIELDS)
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        kwargs: dict[str, object] = {}
        for key, attr in _FIELDS.items():
            if key not in data:
                continue
            value = data[key]
            if attr == "hang":
                if not isinstance(value, bool):
                    raise ValueError("hang must be true or false")
            elif attr == "operations":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError("operations must be a list of operation names")
                value = frozenset(value)
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key} must be a number")
            else:
                value = float(value)
            kwargs[attr] = value
        return cls(**kwargs)  # type: ignore[arg-type]


class FaultGate:
    """Applies the current :class:`Faults` around each API call; see the module docstring."""

    def __init__(self, *, clock: SimClock, rng: random.Random) -> None:
        self._clock = clock
        self._rng = rng
        self._faults = Faults()
        self._unhung = asyncio.Event()
        self._unhung.set()

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._faults = faults
        if faults.hang:
            self._unhung.clear()
        else:
            self._unhung.set()

    def release_hung_calls(self) -> None:
        """Let hung calls fail now (on shutdown), whatever the faults say."""
        self._unhung.set()

    async def before(self, operation: str) -> None:
        faults = self._faults
        if not faults.applies_to(operation):
            return
        if faults.latency > 0:
            await self._clock.sleep(faults.latency)
        if faults.hang:
            await self._unhung.wait()
            raise RetryableError(
                f"{operation} timed out inside the service", code="ServiceUnavailable"
            )
        if faults.throttle_rate and self._rng.random() < faults.throttle_rate:
            raise ThrottledError("rate exceeded", code="Throttling", retry_after=faults.retry_after)
        if faults.error_rate and self._rng.random() < faults.error_rate:
            raise RetryableError(f"an internal error occurred in {operation}", code="InternalError")

    def after(self, operation: str) -> None:
        faults = self._faults
        if (
            faults.applies_to(operation)
            and faults.lost_reply_rate
            and self._rng.random() < faults.lost_reply_rate
        ):
            raise RetryableError(f"an internal error occurred in {operation}", code="InternalError")
