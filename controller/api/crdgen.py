"""Generate the CustomResourceDefinitions from the API models.

Public API:

- :func:`generate_crds` — one ``apiextensions.k8s.io/v1`` CRD dict per model in
  :data:`controller.api.registry.ALL_MODELS`;
- :func:`render_crds_yaml` — file name (``<group>_<plural>.yaml``) to YAML text;
- :func:`write_crds` — write those files into a directory.

Invariants:

- Output is deterministic: the same models give byte-identical YAML (mapping keys sorted,
  ``required`` sorted; lists whose order means something — enums, printer columns, CEL rules —
  keep the order the model gives). The committed ``charts/machinepool-controller/crds/`` is
  compared to :func:`render_crds_yaml` by a test; ``make crds`` refreshes it.
- Every schema is structural (see :mod:`controller.api.structural`); each CRD serves and
  stores exactly one version.

Failure: a model that cannot be expressed as a CRD raises
:class:`~controller.api.structural.StructuralSchemaError`; :func:`write_crds` raises
``OSError`` when the directory cannot be written. It writes each file atomically
(temporary file, then rename) and leaves other files in the directory alone.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from controller.api.apiobject import ApiObject
from controller.api.registry import ALL_MODELS
from controller.api.structural import structural_schema

__all__ = ["crd_file_name", "generate_crd", "generate_crds", "render_crds_yaml", "write_crds"]

_HEADER = (
    "# Generated from the models in controller/api by `machinepool-controller crds`.\n"
    "# Do not edit by hand: change the models and run `make crds`.\n"
)


def generate_crd(model: type[ApiObject]) -> dict[str, Any]:
    """The CustomResourceDefinition of one top-level model."""
    kind, options = model.KIND, model.CRD
    schema = structural_schema(model, replace={"metadata": {"type": "object"}})
    version: dict[str, Any] = {
        "name": kind.version,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
    }
    subresources: dict[str, Any] = {}
    if options.status_subresource:
        subresources["status"] = {}
    if options.scale is not None:
        scale = {
            "specReplicasPath": options.scale.spec_replicas_path,
            "statusReplicasPath": options.scale.status_replicas_path,
        }
        if options.scale.label_selector_path is not None:
            scale["labelSelectorPath"] = options.scale.label_selector_path
        subresources["scale"] = scale
    if subresources:
        version["subresources"] = subresources
    if options.printer_columns:
        columns = []
        for column in options.printer_columns:
            entry: dict[str, Any] = {
                "name": column.name,
                "type": column.type,
                "jsonPath": column.json_path,
            }
            if column.description:
                entry["description"] = column.description
            if column.priority:
                entry["priority"] = column.priority
            columns.append(entry)
        version["additionalPrinterColumns"] = columns
    names: dict[str, Any] = {
        "kind": kind.kind,
        "listKind": kind.list_kind,
        "plural": kind.plural,
        "singular": kind.singular,
    }
    if kind.short_names:
        names["shortNames"] = list(kind.short_names)
    if options.categories:
        names["categories"] = list(options.categories)
    metadata: dict[str, Any] = {"name": kind.crd_name}
    if options.labels:
        metadata["labels"] = dict(options.labels)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": metadata,
        "spec": {
            "group": kind.group,
            "names": names,
            "scope": "Namespaced" if kind.namespaced else "Cluster",
            "versions": [version],
        },
    }


def generate_crds() -> list[dict[str, Any]]:
    """The CustomResourceDefinitions of all our kinds, in :data:`ALL_MODELS` order."""
    return [generate_crd(model) for model in ALL_MODELS]


def crd_file_name(crd: dict[str, Any]) -> str:
    """``<group>_<plural>.yaml``, the file name a CRD is written under."""
    spec = crd["spec"]
    return f"{spec['group']}_{spec['names']['plural']}.yaml"


def render_crds_yaml() -> dict[str, str]:
    """File name to YAML text for every CRD, sorted by file name."""
    rendered = {
        crd_file_name(crd): _HEADER
        + yaml.safe_dump(
            crd, sort_keys=True, default_flow_style=False, allow_unicode=True, width=100
        )
        for crd in generate_crds()
    }
    return dict(sorted(rendered.items()))


def write_crds(output_dir: Path) -> list[Path]:
    """Write every CRD into ``output_dir`` (created if missing); return the paths written."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_crds_yaml().items():
        path = output_dir / name
        fd, tmp = tempfile.mkstemp(dir=output_dir, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(path)
    return written
