"""cluster-autoscaler's min/max-size annotations on a MachinePool: defaulting and validation.

cluster-autoscaler's Cluster API provider treats a MachinePool with both
``cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size`` and ``-max-size`` as a node
group and scales it through the scale subresource, within [min, max].

Defaulting (:func:`default_replicas`). Cluster API's admission webhook sets an *unset*
``spec.replicas`` to min-size on create. We have no webhook, and the CRD's schema default
(``replicas: 1``) has already filled the field before any controller sees the object, so
"unset" cannot be told apart from "1". What we do instead, once: before the pool's first
successful reconcile (no ``status.observedGeneration`` yet), when both annotations are valid
and ``spec.replicas`` lies outside [min, max], ``spec.replicas`` is clamped into the range and
a Normal ``ReplicasDefaulted`` Event says from what to what. Consequences, documented in
docs/compatibility.md: min 0 with no replicas gives 1 (upstream: 0); an explicit ``replicas``
below min is raised to min (upstream keeps it). Later changes — a ``kubectl scale`` outside the
range included — are never overridden: the range is cluster-autoscaler's, not a limit on
people. Under ``cluster.x-k8s.io/replicas-managed-by`` nothing is defaulted (the size belongs
to the external scaler). It is called before the pool adopts its infrastructure pool, so the
provider never sees the pre-default size.

Validation (:func:`report_bounds`): the ``AutoscalerBounds`` condition, only while at least
one annotation is present (removed otherwise):

- ``True``/``WithinBounds``: replicas inside [min, max];
- ``False``/``ReplicasOutsideBounds``: replicas outside (set by hand or through ``/scale``);
  honoured, but cluster-autoscaler will not scale it until it is back inside;
- ``False``/``InvalidAutoscalerAnnotations``: a value that is not a non-negative integer, only
  one of the two annotations, or min > max. A Warning Event is recorded when the condition
  turns to this reason. Nothing is defaulted from invalid annotations, and the reconcile
  carries on; a bad annotation never fails or crashes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from controller.api.kinds import MACHINE_POOL
from controller.machinepool.infrastructure import replicas_managed_externally
from controller.machinepool.scope import PoolScope
from controller.runtime import conditions
from controller.runtime.conditions import Cond
from controller.runtime.kube import KubeClient

__all__ = [
    "BOUNDS_CONDITION",
    "MAX_SIZE_ANNOTATION",
    "MIN_SIZE_ANNOTATION",
    "AutoscalerBounds",
    "InvalidBounds",
    "default_replicas",
    "parse_bounds",
    "report_bounds",
]

MIN_SIZE_ANNOTATION = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size"
MAX_SIZE_ANNOTATION = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size"
BOUNDS_CONDITION = "AutoscalerBounds"
_INT32_MAX = 2**31 - 1
_DIGITS = re.compile(r"^[0-9]+$")


@dataclass(frozen=True, slots=True)
class AutoscalerBounds:
    """A valid [minimum, maximum] from the annotations."""

    minimum: int
    maximum: int

    def clamp(self, replicas: int) -> int:
        return min(max(replicas, self.minimum), self.maximum)

    def __str__(self) -> str:
        return f"[{self.minimum}, {self.maximum}]"


class InvalidBounds(ValueError):
    """The annotations are present but unusable; the message says which and why."""


def _size(annotations: dict[str, str], key: str) -> int:
    text = annotations[key].strip()
    if not _DIGITS.match(text) or int(text) > _INT32_MAX:
        raise InvalidBounds(f"{key} is {annotations[key]!r}, not a non-negative integer")
    return int(text)


def parse_bounds(annotations: dict[str, str] | None) -> AutoscalerBounds | None:
    """The bounds, or None when neither annotation is set; raises :class:`InvalidBounds`."""
    annotations = annotations or {}
    has_min, has_max = MIN_SIZE_ANNOTATION in annotations, MAX_SIZE_ANNOTATION in annotations
    if not has_min and not has_max:
        return None
    if not (has_min and has_max):
        present, missing = (
            (MIN_SIZE_ANNOTATION, MAX_SIZE_ANNOTATION)
            if has_min
            else (MAX_SIZE_ANNOTATION, MIN_SIZE_ANNOTATION)
        )
        raise InvalidBounds(f"{present} is set but {missing} is not; cluster-autoscaler needs both")
    low, high = _size(annotations, MIN_SIZE_ANNOTATION), _size(annotations, MAX_SIZE_ANNOTATION)
    if low > high:
        raise InvalidBounds(f"min-size {low} is greater than max-size {high}")
    return AutoscalerBounds(minimum=low, maximum=high)


async def default_replicas(*, kube: KubeClient, scope: PoolScope) -> None:
    """Clamp ``spec.replicas`` into the annotated range once; see the module docstring.

    Writes at once, one of the early writes :mod:`.scope` lists (a merge patch with a
    resourceVersion precondition, so a concurrent change wins and we retry), and adopts the
    result into the scope (``scope.obj`` and ``scope.pool``).
    """
    if scope.deleting or scope.status.get("observedGeneration") is not None:
        return
    if replicas_managed_externally(scope):
        return
    try:
        bounds = parse_bounds(scope.obj["metadata"].get("annotations"))
    except InvalidBounds:
        return  # report_bounds says why
    if bounds is None:
        return
    current = scope.pool.spec.replicas
    current = 1 if current is None else current
    wanted = bounds.clamp(current)
    if wanted == current:
        return
    updated = await kube.merge_patch(
        MACHINE_POOL,
        namespace=scope.namespace,
        name=scope.name,
        patch={"spec": {"replicas": wanted}},
        resource_version=scope.obj["metadata"]["resourceVersion"],
    )
    scope.adopt(updated)
    scope.event(
        "Normal",
        "ReplicasDefaulted",
        f"spec.replicas set to {wanted} (was {current}) to fit the cluster-autoscaler "
        f"min/max-size annotations {bounds}",
    )


def report_bounds(scope: PoolScope) -> None:
    """Set (or remove) the ``AutoscalerBounds`` condition; see the module docstring."""
    previous = conditions.get(scope.status.get("conditions", []), BOUNDS_CONDITION)
    try:
        bounds = parse_bounds(scope.obj["metadata"].get("annotations"))
    except InvalidBounds as exc:
        message = f"{exc}; the pool is not scaled by cluster-autoscaler and replicas is kept"
        if previous is None or previous.get("reason") != "InvalidAutoscalerAnnotations":
            scope.event("Warning", "InvalidAutoscalerAnnotations", message)
        scope.condition(
            Cond(
                type=BOUNDS_CONDITION,
                status="False",
                reason="InvalidAutoscalerAnnotations",
                message=message,
            )
        )
        return
    if bounds is None:
        if previous is not None:
            scope.status["conditions"] = [
                c for c in scope.status.get("conditions", []) if c.get("type") != BOUNDS_CONDITION
            ]
        return
    replicas = scope.desired_replicas
    if bounds.minimum <= replicas <= bounds.maximum:
        scope.condition(
            Cond(
                type=BOUNDS_CONDITION,
                status="True",
                reason="WithinBounds",
                message=f"{replicas} replicas, within {bounds}",
            )
        )
    else:
        scope.condition(
            Cond(
                type=BOUNDS_CONDITION,
                status="False",
                reason="ReplicasOutsideBounds",
                message=f"{replicas} replicas is outside the cluster-autoscaler range {bounds}; "
                "kept as asked, but cluster-autoscaler will not scale the pool until it is "
                "back inside",
            )
        )
