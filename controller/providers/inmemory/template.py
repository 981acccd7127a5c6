"""The launch template of a simulated group, read from ``GroupSpec.template``.

The template is plain data; the simulator understands these keys (the camelCase field names
of ``InMemoryMachinePool.spec.template``, plus ``kubernetesVersion`` which the reconciler
adds from the MachinePool's ``spec.template.spec.version``):

=====================  =========================================================  =========
key                    meaning                                                    default
=====================  =========================================================  =========
``bootDelaySeconds``   launch to running, with ±20% jitter                        1
``readyDelaySeconds``  Node registration to Node ``Ready=True``                   1
``failureRate``        probability (0..1) that a launch fails                     0
``instanceType``       the ``node.kubernetes.io/instance-type`` label of Nodes    none
``kubernetesVersion``  ``status.nodeInfo.kubeletVersion`` of Nodes                v1.35.4
``zones``              zones to spread over when ``GroupSpec.zones`` is empty     zone-a
=====================  =========================================================  =========

Other keys (``version``, anything unknown) are kept with the group and otherwise ignored.

Failure: a value of the wrong type or out of range raises :class:`ValueError` naming the
key; the simulator answers it as a permanent ``ValidationError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["DEFAULT_KUBERNETES_VERSION", "DEFAULT_ZONE", "LaunchTemplate"]

DEFAULT_KUBERNETES_VERSION = "v1.35.4"
DEFAULT_ZONE = "zone-a"


@dataclass(frozen=True, slots=True)
class LaunchTemplate:
    """What the simulator needs from a template, validated."""

    boot_delay: float = 1.0
    ready_delay: float = 1.0
    failure_rate: float = 0.0
    instance_type: str | None = None
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION
    zones: tuple[str, ...] = ()

    @classmethod
    def parse(cls, template: Mapping[str, object]) -> LaunchTemplate:
        """Validate ``template``; :class:`ValueError` names the first bad key."""
        return cls(
            boot_delay=_number(template, "bootDelaySeconds", default=1.0, low=0.0),
            ready_delay=_number(template, "readyDelaySeconds", default=1.0, low=0.0),
            failure_rate=_number(template, "failureRate", default=0.0, low=0.0, high=1.0),
            instance_type=_string(template, "instanceType"),
            kubernetes_version=_string(template, "kubernetesVersion") or DEFAULT_KUBERNETES_VERSION,
            zones=_zones(template.get("zones"), key="template.zones"),
        )


def effective_zones(*, spec_zones: Sequence[str], template: LaunchTemplate) -> tuple[str, ...]:
    """The group's zones: the spec's, else the template's, else :data:`DEFAULT_ZONE`."""
    return tuple(spec_zones) or template.zones or (DEFAULT_ZONE,)


def validate_zones(zones: object, *, key: str) -> tuple[str, ...]:
    """Zones must be non-empty strings without ``/`` (they are part of the provider ID)."""
    return _zones(zones, key=key)


def _number(
    template: Mapping[str, object],
    key: str,
    *,
    default: float,
    low: float,
    high: float | None = None,
) -> float:
    value = template.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"template.{key} must be a number, not {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise ValueError(f"template.{key} must be {bounds}, got {value}")
    return float(value)


def _string(template: Mapping[str, object], key: str) -> str | None:
    value = template.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"template.{key} must be a non-empty string")
    return value


def _zones(value: object, *, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"{key} must be a list of zone names")
    zones: list[str] = []
    for zone in value:
        if not isinstance(zone, str) or not zone or "/" in zone or len(zone) > 63:
            raise ValueError(f"{key}: {zone!r} is not a zone name (1..63 characters, no '/')")
        if zone not in zones:
            zones.append(zone)
    return tuple(zones)
