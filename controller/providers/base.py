"""The provider protocol: what the infrastructure reconciler needs from a cloud instance group.

Every provider (the in-memory simulator, AWS, ...) implements :class:`InstanceGroupProvider`.
The reconciler above it never sees cloud SDK types: it works with :class:`GroupSpec`,
:class:`GroupStatus` and :class:`Instance`, and with the typed errors below.

Semantics every implementation keeps:

- ``ensure_group`` is idempotent: it creates the group when missing and updates its shape
  (template, min/max, zones) when it differs; it never changes the desired capacity of an
  existing group (that is ``set_capacity``'s job) and creates new groups at capacity 0.
- ``delete_instance(shrink=True)`` removes that instance and lowers the desired capacity by
  one in the same call, so the cloud never picks a victim or replaces it;
  ``shrink=False`` lets the group replace it.
- ``delete_group`` succeeds when the group is already gone.
- Tags: ``ensure_group`` sets every tag of ``GroupSpec.tags`` and removes exactly the tags of
  ``GroupSpec.applied_tag_keys`` that ``tags`` no longer has (providers that replace a
  group's tags wholesale, like the in-memory simulator, may ignore ``applied_tag_keys``).
- Ownership: ``GroupSpec.owner_tags`` are the tags that prove a group (and, on AWS, its
  launch template) is this pool's. ``ensure_group`` creates a missing group with them, and
  raises :class:`GroupOwnedByOthersError` *before any write* when a group or launch template
  of that name exists without every one of them (same key, same value): an untagged or
  foreign object is never adopted, updated, scaled or deleted. ``delete_group`` checks the
  same ``owner_tags`` and raises the same error instead of deleting. ``set_capacity`` and
  ``delete_instance`` take only a name: the reconciler calls them only after
  ``ensure_group`` checked ownership in the same reconcile. Empty ``owner_tags`` prove
  nothing and check nothing (tests use them to stand in for someone else's group).
- Calls are safe to retry after any error.

Errors: :class:`RetryableError` (a transient failure; ``retry_after`` when the cloud said how
long to wait), :class:`ThrottledError` (rate limited; a kind of retryable), and
:class:`PermanentError` (bad configuration, quota, authorization: retrying will not help until
something changes; the reconciler reports it in a condition). :class:`GroupNotFoundError` is a
permanent error for a group that does not exist; :class:`GroupOwnedByOthersError` (code
``GroupOwnedByOthers``) a permanent error for a cloud object that is not ours. Every error
carries the cloud's ``code`` and a message safe to show to people (no credentials).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

InstanceState = Literal["pending", "running", "failed", "terminating"]
#: Cluster API's ``MachineAddress`` types.
AddressType = Literal["Hostname", "ExternalIP", "InternalIP", "ExternalDNS", "InternalDNS"]


@dataclass(frozen=True, slots=True)
class Address:
    """One network address of an instance (Cluster API's ``MachineAddress``)."""

    type: AddressType
    address: str


@dataclass(frozen=True, slots=True)
class Instance:
    """One member of a group, as the cloud reports it."""

    instance_id: str
    provider_id: str
    zone: str
    state: InstanceState
    #: The template version the instance was launched from.
    version: str
    launched_at: datetime
    #: The instance's addresses, when the provider knows them (empty otherwise).
    addresses: tuple[Address, ...] = ()


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """The shape of a group: everything but its capacity."""

    #: Unique per provider account/region; the reconciler derives it from the pool.
    name: str
    #: ``namespace/name`` of the Cluster API Cluster the instances join.
    cluster: str
    #: Provider-specific launch template (instance type, image, ...), as plain data.
    template: Mapping[str, object]
    #: The template's version; instances report the version they were launched from.
    template_version: str
    min_size: int = 0
    max_size: int | None = None
    zones: Sequence[str] = ()
    #: The bootstrap data (user data) instances boot with.
    bootstrap_data: bytes = b""
    tags: Mapping[str, str] = field(default_factory=dict)
    #: Keys of the tags the caller applied to the group last time (it remembers them across
    #: restarts). Those no longer in ``tags`` are removed from the group; a tag not among
    #: them (one someone else added) is never removed.
    applied_tag_keys: frozenset[str] = frozenset()
    #: The tags that prove an existing group is this pool's (a subset of ``tags``); see the
    #: module docstring.
    owner_tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GroupStatus:
    """What the cloud says about a group."""

    name: str
    desired_capacity: int
    template_version: str
    instances: Sequence[Instance]


class ProviderError(Exception):
    """A provider call failed; see the subclasses."""

    retryable = False

    def __init__(self, message: str, *, code: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class RetryableError(ProviderError):
    """A transient failure (a 5xx, a timeout): retry with backoff."""

    retryable = True


class ThrottledError(RetryableError):
    """The cloud rate-limited us: retry later, honouring ``retry_after`` when given."""


class PermanentError(ProviderError):
    """Retrying will not help until the configuration or the account changes."""


class GroupNotFoundError(PermanentError):
    """The group does not exist."""


class GroupOwnedByOthersError(PermanentError):
    """A group (or launch template) of the wanted name exists but its tags do not prove it is
    ours: it is left untouched."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=GROUP_OWNED_BY_OTHERS)


#: The code (and condition reason) of :class:`GroupOwnedByOthersError`.
GROUP_OWNED_BY_OTHERS = "GroupOwnedByOthers"


def owned(*, tags: Mapping[str, str], owner_tags: Mapping[str, str]) -> bool:
    """True when ``tags`` carry every one of ``owner_tags`` with the same value."""
    return all(tags.get(key) == value for key, value in owner_tags.items())


class InstanceGroupProvider(Protocol):
    """The calls the infrastructure reconciler makes; see the module docstring."""

    async def ensure_group(self, *, spec: GroupSpec) -> GroupStatus: ...

    async def describe_group(self, *, name: str) -> GroupStatus:
        """The group's capacity, template version and instances; GroupNotFoundError if absent."""
        ...

    async def set_capacity(self, *, name: str, desired: int) -> None: ...

    async def delete_instance(self, *, name: str, instance_id: str, shrink: bool) -> None: ...

    async def delete_group(self, *, name: str, owner_tags: Mapping[str, str]) -> None:
        """Delete the group (gone is success); GroupOwnedByOthersError, and nothing deleted,
        when it exists without ``owner_tags``."""
        ...
