"""What a CRD says beyond its schema: printer columns, subresources, categories, labels.

Each top-level model declares one :class:`CrdOptions` next to its fields, so the model stays
the single source of truth; :mod:`controller.api.crdgen` only assembles.

Invariants: everything here is immutable plain data; order of printer columns is the order
``kubectl get`` shows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["CrdOptions", "PrinterColumn", "ScaleSubresource"]


@dataclass(frozen=True, slots=True)
class PrinterColumn:
    """One ``additionalPrinterColumns`` entry."""

    name: str
    json_path: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    description: str = ""
    priority: int = 0


@dataclass(frozen=True, slots=True)
class ScaleSubresource:
    """The ``scale`` subresource, as ``kubectl scale`` and autoscalers use it."""

    spec_replicas_path: str
    status_replicas_path: str
    label_selector_path: str | None = None


@dataclass(frozen=True, slots=True)
class CrdOptions:
    """CRD settings of one top-level model."""

    printer_columns: tuple[PrinterColumn, ...] = ()
    status_subresource: bool = True
    scale: ScaleSubresource | None = None
    categories: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
