"""Names the simulator makes up: instance IDs, provider IDs and Node names.

Invariants: an instance ID is a DNS label (lowercase letters, digits and ``-``, at most 63
characters, starting and ending with an alphanumeric), so it is a valid Node name as it
stands and contains no ``/`` (it is the last path segment of the provider ID). It starts
with a DNS-safe form of the group name, so instances of different groups (and Nodes of
different groups sharing one workload cluster) never collide.

Provider IDs have the form ``inmemory:///<zone>/<instance-id>``, the shape Cluster API
providers use (``aws:///<zone>/<instance-id>``).
"""

from __future__ import annotations

import re

PROVIDER_ID_SCHEME = "inmemory"

_NOT_LABEL = re.compile(r"[^a-z0-9-]+")
_NOT_SUBDOMAIN = re.compile(r"[^a-z0-9.-]+")

#: Characters of the group name kept at the front of an instance ID.
_PREFIX_LENGTH = 50


def dns_label(raw: str, *, max_length: int = 63) -> str:
    """``raw`` lowercased, with runs of other characters turned into ``-`` and trimmed."""
    label = _NOT_LABEL.sub("-", raw.lower()).strip("-")[:max_length].strip("-")
    return label or "x"


def node_name(instance_id: str) -> str:
    """The Node name of an instance: a DNS subdomain (at most 253 characters)."""
    name = _NOT_SUBDOMAIN.sub("-", instance_id.lower()).strip("-.")[:253].strip("-.")
    return name or "x"


def instance_id(*, group: str, suffix: int) -> str:
    """``<group-label>-<8 hex digits>``: a DNS label unique per (group, suffix)."""
    return f"{dns_label(group, max_length=_PREFIX_LENGTH)}-{suffix & 0xFFFFFFFF:08x}"


def provider_id(*, zone: str, instance_id: str) -> str:
    return f"{PROVIDER_ID_SCHEME}:///{zone}/{instance_id}"
