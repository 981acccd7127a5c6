"""The simulator's records of groups and instances, and their JSON form.

An instance moves through these phases (``InstancePhase``)::

    pending --boot--> running
    pending --boot fails--> failed
    running --crash--> failed
    pending/running --delete--> [terminating --delay-->] terminated
    failed --retention--> terminated

``terminating`` is visible in the group's listing (only with a termination delay);
``terminated`` instances are no longer members of their group and are kept only until their
Node has been told to stop heartbeating. Only ``pending`` and ``running`` instances count
towards the group's capacity.

Separately, ``node`` records what the simulator has achieved in the workload cluster for the
instance (``NodePhase``): ``absent`` (nothing registered), ``registered`` (Node created,
``Ready=False``), ``ready`` (``Ready=True``), ``unknown`` (``Ready=Unknown``, the instance is
gone). ``ready_at`` is set when the Node is registered.

All times are Unix seconds on the simulator's clock, so the encoded state means the same
after a restart. :func:`decode_state` raises :class:`ValueError` for a document it cannot
read (wrong format version, missing fields); the launch template is re-validated on load.
"""

from __future__ import annotations

import base64
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from controller.providers.inmemory.template import LaunchTemplate, effective_zones

__all__ = [
    "STATE_FORMAT_VERSION",
    "GroupRecord",
    "InstancePhase",
    "InstanceRecord",
    "NodePhase",
    "decode_state",
    "encode_state",
]

STATE_FORMAT_VERSION = 1

InstancePhase = Literal["pending", "running", "failed", "terminating", "terminated"]
NodePhase = Literal["absent", "registered", "ready", "unknown"]

#: Phases that count towards a group's capacity.
ACTIVE_PHASES: frozenset[InstancePhase] = frozenset({"pending", "running"})


@dataclass(slots=True)
class InstanceRecord:
    """One simulated instance."""

    instance_id: str
    group: str
    cluster: str
    provider_id: str
    node_name: str
    zone: str
    version: str
    launched_at: float
    boot_at: float
    will_fail: bool
    ready_delay: float
    kubelet_version: str
    instance_type: str | None = None
    phase: InstancePhase = "pending"
    failed_at: float | None = None
    terminate_at: float | None = None
    ready_at: float | None = None
    node: NodePhase = "absent"

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE_PHASES


@dataclass(slots=True)
class GroupRecord:
    """One simulated instance group."""

    name: str
    cluster: str
    template: dict[str, Any]
    template_version: str
    launch: LaunchTemplate
    min_size: int
    max_size: int | None
    spec_zones: tuple[str, ...]
    bootstrap_data: bytes
    tags: dict[str, str]
    desired: int
    created_at: float
    instances: dict[str, InstanceRecord] = field(default_factory=dict)
    #: IDs of instances that left the group, so repeated deletes succeed.
    tombstones: deque[str] = field(default_factory=lambda: deque(maxlen=1000))

    @property
    def zones(self) -> tuple[str, ...]:
        return effective_zones(spec_zones=self.spec_zones, template=self.launch)

    def active(self) -> list[InstanceRecord]:
        return [inst for inst in self.instances.values() if inst.active]


def encode_state(
    *, groups: dict[str, GroupRecord], gone: dict[str, InstanceRecord], saved_at: float
) -> dict[str, Any]:
    return {
        "formatVersion": STATE_FORMAT_VERSION,
        "savedAt": saved_at,
        "groups": [_encode_group(group) for group in groups.values()],
        "terminated": [_encode_instance(inst) for inst in gone.values()],
    }


def decode_state(
    data: object, *, tombstone_limit: int = 1000
) -> tuple[dict[str, GroupRecord], dict[str, InstanceRecord]]:
    """Groups and terminated-but-unsettled instances from :func:`encode_state`'s output."""
    if not isinstance(data, dict):
        raise ValueError("the state is not a JSON object")
    if data.get("formatVersion") != STATE_FORMAT_VERSION:
        raise ValueError(
            f"unsupported state format {data.get('formatVersion')!r} "
            f"(this version reads {STATE_FORMAT_VERSION})"
        )
    try:
        groups: dict[str, GroupRecord] = {}
        for raw in data["groups"]:
            group = _decode_group(raw, tombstone_limit=tombstone_limit)
            groups[group.name] = group
        gone = {inst.instance_id: inst for inst in map(_decode_instance, data["terminated"])}
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed state: {exc!r}") from exc
    return groups, gone


def _encode_group(group: GroupRecord) -> dict[str, Any]:
    return {
        "name": group.name,
        "cluster": group.cluster,
        "template": group.template,
        "templateVersion": group.template_version,
        "minSize": group.min_size,
        "maxSize": group.max_size,
        "zones": list(group.spec_zones),
        "bootstrapData": base64.b64encode(group.bootstrap_data).decode(),
        "tags": group.tags,
        "desired": group.desired,
        "createdAt": group.created_at,
        "instances": [_encode_instance(inst) for inst in group.instances.values()],
        "tombstones": list(group.tombstones),
    }


def _decode_group(raw: dict[str, Any], *, tombstone_limit: int) -> GroupRecord:
    template = dict(raw["template"])
    group = GroupRecord(
        name=str(raw["name"]),
        cluster=str(raw["cluster"]),
        template=template,
        template_version=str(raw["templateVersion"]),
        launch=LaunchTemplate.parse(template),
        min_size=int(raw["minSize"]),
        max_size=None if raw["maxSize"] is None else int(raw["maxSize"]),
        spec_zones=tuple(str(z) for z in raw["zones"]),
        bootstrap_data=base64.b64decode(raw["bootstrapData"]),
        tags={str(k): str(v) for k, v in raw["tags"].items()},
        desired=int(raw["desired"]),
        created_at=float(raw["createdAt"]),
        tombstones=deque((str(t) for t in raw["tombstones"]), maxlen=tombstone_limit),
    )
    for inst in map(_decode_instance, raw["instances"]):
        group.instances[inst.instance_id] = inst
    return group


_INSTANCE_FIELDS = (
    ("instanceId", "instance_id"),
    ("group", "group"),
    ("cluster", "cluster"),
    ("providerId", "provider_id"),
    ("nodeName", "node_name"),
    ("zone", "zone"),
    ("version", "version"),
    ("launchedAt", "launched_at"),
    ("bootAt", "boot_at"),
    ("willFail", "will_fail"),
    ("readyDelay", "ready_delay"),
    ("kubeletVersion", "kubelet_version"),
    ("instanceType", "instance_type"),
    ("phase", "phase"),
    ("failedAt", "failed_at"),
    ("terminateAt", "terminate_at"),
    ("readyAt", "ready_at"),
    ("node", "node"),
)


def _encode_instance(inst: InstanceRecord) -> dict[str, Any]:
    return {key: getattr(inst, attr) for key, attr in _INSTANCE_FIELDS}


def _decode_instance(raw: dict[str, Any]) -> InstanceRecord:
    kwargs = {attr: raw[key] for key, attr in _INSTANCE_FIELDS}
    if kwargs["phase"] not in get_args(InstancePhase):
        raise ValueError(f"unknown instance phase {kwargs['phase']!r}")
    if kwargs["node"] not in get_args(NodePhase):
        raise ValueError(f"unknown node phase {kwargs['node']!r}")
    return InstanceRecord(**kwargs)
