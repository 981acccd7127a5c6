"""The base of top-level API objects: ``apiVersion``, ``kind``, ``metadata``, kind descriptor.

Invariants:

- Every concrete subclass names its :class:`~controller.api.kinds.Kind` (``KIND``) and its CRD
  settings (``CRD``) as class variables.
- ``apiVersion`` and ``kind`` are filled in when absent, so ``to_dict`` of a model built in
  Python is a complete object ready to create.

Failure: parsing an object whose ``apiVersion`` or ``kind`` names another kind or version
raises :class:`pydantic.ValidationError`; a v1beta1 object is never silently read as v1beta2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field, model_validator

from controller.api.base import ApiModel
from controller.api.crdinfo import CrdOptions
from controller.api.kinds import Kind
from controller.api.meta import ObjectMeta

__all__ = ["ApiObject"]


class ApiObject(ApiModel):
    """A top-level Kubernetes object of one of our kinds."""

    KIND: ClassVar[Kind]
    CRD: ClassVar[CrdOptions] = CrdOptions()

    api_version: str = ""
    """Group and version of the object's schema, e.g. `cluster.x-k8s.io/v1beta2`."""
    kind: str = ""
    """The object's kind, e.g. `MachinePool`."""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    """Name, namespace, labels and the other metadata every object has."""

    @model_validator(mode="before")
    @classmethod
    def _fill_type_meta(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        expected = {"apiVersion": cls.KIND.api_version, "kind": cls.KIND.kind}
        names = {"apiVersion": "api_version", "kind": "kind"}
        out = dict(data)
        for key, want in expected.items():
            got = out.get(key, out.get(names[key]))
            if got is None:
                out[key] = want
            elif got != want:
                raise ValueError(f"{key} is {got!r}, expected {want!r} for {cls.__name__}")
        return out

    @property
    def name(self) -> str:
        """``metadata.name`` (empty when not set yet)."""
        return self.metadata.name or ""

    @property
    def namespace(self) -> str:
        """``metadata.namespace`` (empty when not set yet)."""
        return self.metadata.namespace or ""
