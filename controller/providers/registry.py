"""The registry of infra kinds: for each infra pool kind, its adapter, and the cloud that
reconciles it in this process (if any).

``app.py`` builds one :class:`KindRegistry` per process and hands it to both halves: the
core MachinePool and Machine controllers read only the kinds (:attr:`KindRegistry.pool_kinds`,
:attr:`KindRegistry.machine_kinds`: which infra objects to watch and resolve), the
infrastructure controllers one :class:`CloudKind` each. A kind is wired once: the adapter the
core knows is the adapter the infrastructure reconciler uses.

Invariants: a pool kind appears at most once (:class:`ValueError` otherwise, at start-up);
``provider=None`` means the kind is known to the core but reconciled elsewhere (another
process, or Cluster API's own provider).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from controller.api.kinds import Kind
from controller.providers.adapter import PoolAdapter
from controller.providers.base import InstanceGroupProvider

__all__ = ["CloudKind", "KindRegistry"]


@dataclass(frozen=True, slots=True)
class CloudKind:
    """One infra pool kind: its adapter, its cloud, and how often that cloud is polled."""

    adapter: PoolAdapter
    #: The cloud this process reconciles the kind with; ``None``: known, reconciled elsewhere.
    provider: InstanceGroupProvider | None = None
    #: Seconds between looks while instances boot or the size differs.
    busy_poll: float = 2.0
    #: Seconds between looks once converged (to notice drift).
    steady_poll: float = 60.0


class KindRegistry:
    """Every infra kind this process knows; see the module docstring."""

    def __init__(self, kinds: Iterable[CloudKind] = ()) -> None:
        self._kinds: list[CloudKind] = []
        for kind in kinds:
            self.add(kind)

    def add(self, kind: CloudKind) -> None:
        """Register ``kind``; a second entry for the same pool kind is a :class:`ValueError`."""
        if any(k.adapter.kind == kind.adapter.kind for k in self._kinds):
            raise ValueError(f"infra pool kind {kind.adapter.kind.kind} is registered twice")
        self._kinds.append(kind)

    @property
    def entries(self) -> tuple[CloudKind, ...]:
        return tuple(self._kinds)

    @property
    def reconciled(self) -> tuple[CloudKind, ...]:
        """The kinds this process reconciles (those with a provider)."""
        return tuple(k for k in self._kinds if k.provider is not None)

    @property
    def pool_kinds(self) -> tuple[Kind, ...]:
        return tuple(k.adapter.kind for k in self._kinds)

    @property
    def machine_kinds(self) -> tuple[Kind, ...]:
        return tuple(k.adapter.machine_kind for k in self._kinds
                     if k.adapter.machine_kind is not None)  # fmt: skip
