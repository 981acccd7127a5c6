"""How an ``AWSMachinePool`` becomes an Auto Scaling group spec.

The group and its launch template share one name (:mod:`controller.providers.naming`: a
readable ``<namespace>-<name>`` prefix and a hash of ``<namespace>/<name>``, at most 128
characters, the launch template's limit), recorded in ``status.groupName`` and kept for the
pool's life, so pools sharing an account never collide.

``GroupSpec.template`` carries the AWS-specific settings as plain data (the provider turns
them into API parameters; see :mod:`controller.providers.aws.provider`).
``GroupSpec.template_version`` is a short hash of the launch template's *shape* (image,
type, profile, key, volume, security groups): what makes an instance out of date. User data
and tags are left out of it on purpose: a rotated bootstrap token or a new tag makes a new
launch template version, but does not replace running instances.

Bootstrap data: the MachinePool's ``spec.template.spec.bootstrap.dataSecretName`` (which
the core reconciler fills from a ``configRef``), read from the shared cache of Secrets
labelled ``cluster.x-k8s.io/cluster-name`` (bootstrap providers label their data Secrets
so). A missing Secret is a :class:`~controller.providers.base.PermanentError` with code
``BootstrapDataNotFound``: the reconciler shows it in the ``Ready`` condition, and the
Secret's arrival re-queues the pool (``watches_bootstrap_data``;
:mod:`controller.infrastructure.setup`).

:meth:`AwsPoolAdapter.status_fields` adds ``status.launchTemplateID`` and
``launchTemplateVersion`` (an optional hook of the adapter protocol).

Tags (on the group, the launch template, instances and volumes): the cluster ownership tags
``sigs.k8s.io/cluster-api-provider-aws/cluster/<cluster>=owned`` and
``kubernetes.io/cluster/<cluster>=owned``, ``sigs.k8s.io/cluster-api-provider-aws/role=node``,
``Name=<pool>``, then ``additionalTags`` (which win over those), then the ownership tags
(:meth:`AwsPoolAdapter.owner_tags`: the pool's namespace and name, and the CAPA cluster tag),
which nothing overrides. A group or launch template of the pool's name that lacks any
ownership tag is someone else's: the provider leaves it untouched
(:class:`~controller.providers.base.GroupOwnedByOthersError`).

Removing a tag from ``additionalTags`` removes it from the group, as CAPA does: the
``additionalTags`` applied last are recorded on the AWSMachinePool in CAPA's annotation
``sigs.k8s.io/cluster-api-provider-aws-last-applied-tags`` (a JSON object, CAPA's format, so
either controller can take over from the other), and the next ``ensure_group`` deletes the
recorded keys the spec no longer has (``GroupSpec.applied_tag_keys``). The record lives in
the API server, so a tag removed while the controller was down is still removed after a
restart. The generic reconciler writes it through :meth:`AwsPoolAdapter.remembered_annotations`
twice around ``ensure_group``: before, the union of the record and the tags about to be
applied (a crash in between cannot forget a tag that reached the group); after success,
exactly the tags applied. Tags never recorded there (the ownership tags, ``Name``, tags a
person added to the group) are never deleted; a pool that has no record yet (made before
this existed) removes nothing until its first record is written.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from typing import Any

from controller.api.duration import parse_go_duration
from controller.api.kinds import AWS_MACHINE, AWS_MACHINE_POOL, Kind
from controller.providers.adapter import PoolAdapterDefaults
from controller.providers.aws.launchtemplate import LaunchTemplates
from controller.providers.aws.provider import PROCESSES
from controller.providers.base import GroupSpec, GroupStatus, PermanentError
from controller.providers.naming import pool_owner_tags, recorded_group_name
from controller.runtime.informer import Informer
from controller.runtime.store import Obj

__all__ = ["LAST_APPLIED_TAGS_ANNOTATION", "AwsPoolAdapter", "parse_duration_seconds"]

#: CAPA's record of the ``additionalTags`` it applied to the group (a JSON object).
LAST_APPLIED_TAGS_ANNOTATION = "sigs.k8s.io/cluster-api-provider-aws-last-applied-tags"


#: Launch template names are at most 128 characters (Auto Scaling groups 255); both share it.
_MAX_NAME = 128
_CAPA_CLUSTER_TAG = "sigs.k8s.io/cluster-api-provider-aws/cluster/"
#: CAPA's ``suspendProcesses.processes`` keys to Auto Scaling process names.
_PROCESS_NAMES = {p[0].lower() + p[1:]: p for p in PROCESSES} | {"azRebalance": "AZRebalance"}


def parse_duration_seconds(value: str | int | float) -> int:
    """``"1h"``/``"90s"``/``"1m30s"``/``300`` → whole seconds; ValueError when malformed."""
    if isinstance(value, int | float):
        return int(value)
    text = value.strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    try:
        return int(parse_go_duration(text))
    except ValueError:
        raise ValueError(f"{value!r} is not a duration") from None


def _additional_tags(infra: Obj) -> dict[str, str]:
    spec = infra.get("spec") or {}
    return {str(k): str(v) for k, v in (spec.get("additionalTags") or {}).items()}


def _last_applied_tags(infra: Obj) -> dict[str, str] | None:
    """The recorded ``additionalTags``; None when there is no record (or it is unreadable)."""
    raw = (infra["metadata"].get("annotations") or {}).get(LAST_APPLIED_TAGS_ANNOTATION)
    if raw is None:
        return None
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    return {str(k): str(v) for k, v in parsed.items()}


def _tags_record(tags: dict[str, str]) -> str:
    # Go's json.Marshal of a map, as CAPA writes it: sorted keys, no spaces.
    return json.dumps(tags, sort_keys=True, separators=(",", ":"))


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]


class AwsPoolAdapter(PoolAdapterDefaults):
    """:class:`~controller.providers.adapter.PoolAdapter` for ``AWSMachinePool``."""

    kind: Kind = AWS_MACHINE_POOL
    #: The per-instance kind (``status.infrastructureMachineKind``).
    machine_kind: Kind = AWS_MACHINE
    finalizer: str = "awsmachinepool.infrastructure.cluster.x-k8s.io"
    #: ``group_spec`` reads the bootstrap data Secret (the user data).
    watches_bootstrap_data = True

    def __init__(
        self, *, secrets: Informer | None = None, templates: LaunchTemplates | None = None
    ) -> None:
        self.secrets = secrets
        self.templates = templates

    def status_fields(self, *, infra: Obj, group: GroupStatus) -> Obj:
        """``status.launchTemplateID``/``launchTemplateVersion`` (what this process knows)."""
        known = self.templates.known(group.name) if self.templates is not None else None
        if known is None:
            return {}
        return {"launchTemplateID": known.id, "launchTemplateVersion": str(known.latest)}

    def remembered_annotations(self, *, infra: Obj, applied: bool) -> dict[str, str]:
        """The last-applied-tags record to write on the pool around ``ensure_group``.

        ``applied=False`` (before the call): the record plus the tags about to be applied;
        ``applied=True`` (after it succeeded): exactly the applied ``additionalTags``. Empty
        when there is nothing to record.
        """
        current = _additional_tags(infra)
        recorded = _last_applied_tags(infra)
        if recorded is None and not current:
            return {}
        wanted = current if applied else {**(recorded or {}), **current}
        return {LAST_APPLIED_TAGS_ANNOTATION: _tags_record(wanted)}

    def group_name(self, *, infra: Obj) -> str:
        return recorded_group_name(infra=infra, max_length=_MAX_NAME)

    def owner_tags(self, *, infra: Obj, cluster: str | None) -> dict[str, str]:
        """The pool's namespace and name tags, and CAPA's cluster tag when the cluster is
        known (a pool being deleted after its MachinePool may no longer know it)."""
        meta = infra["metadata"]
        tags = pool_owner_tags(namespace=str(meta["namespace"]), name=str(meta["name"]))
        if cluster:
            tags[f"{_CAPA_CLUSTER_TAG}{cluster}"] = "owned"
        return tags

    def group_spec(self, *, infra: Obj, pool: Obj) -> GroupSpec:
        spec = infra.get("spec") or {}
        meta = infra["metadata"]
        cluster = str(pool["spec"]["clusterName"])
        lt = spec.get("awsLaunchTemplate") or {}
        launch: Obj = {
            "imageId": (lt.get("ami") or {}).get("id"),
            "instanceType": lt.get("instanceType"),
            "iamInstanceProfile": lt.get("iamInstanceProfile"),
            "sshKeyName": lt.get("sshKeyName"),
            "rootVolume": lt.get("rootVolume"),
            "securityGroupIds": [
                g["id"] for g in lt.get("additionalSecurityGroups") or [] if g.get("id")
            ],
        }
        launch = {k: v for k, v in launch.items() if v not in (None, [], "")}
        template: Obj = {
            "launchTemplate": launch,
            "subnets": [s["id"] for s in spec.get("subnets") or [] if s.get("id")],
            "capacityRebalance": bool(spec.get("capacityRebalance")),
            "suspendProcesses": self._processes(spec.get("suspendProcesses")),
            "lifecycleHooks": [self._hook(h) for h in spec.get("lifecycleHooks") or []],
        }
        if spec.get("mixedInstancesPolicy"):
            template["mixedInstancesPolicy"] = spec["mixedInstancesPolicy"]
        for field in ("defaultCooldown", "defaultInstanceWarmup"):
            if spec.get(field):
                template[field] = self._seconds(spec[field], field=f"spec.{field}")
        strategy = (spec.get("strategy") or {}).get("type")
        prefs = spec.get("refreshPreferences") or {}
        if strategy == "InstanceRefresh" and not prefs.get("disable"):
            template["instanceRefresh"] = {"enabled": True, **prefs}
        owner = self.owner_tags(infra=infra, cluster=cluster)
        tags = {
            f"kubernetes.io/cluster/{cluster}": "owned",
            "sigs.k8s.io/cluster-api-provider-aws/role": "node",
            "Name": str(meta["name"]),
            **_additional_tags(infra),
            **owner,
        }
        low, high = self.size_bounds(infra=infra)
        return GroupSpec(
            name=self.group_name(infra=infra),
            cluster=f"{meta['namespace']}/{cluster}",
            template=template,
            template_version=_digest(launch),
            min_size=low,
            max_size=high,
            zones=tuple(spec.get("availabilityZones") or ()),
            bootstrap_data=self._bootstrap_data(pool),
            tags=tags,
            applied_tag_keys=frozenset(_last_applied_tags(infra) or ()),
            owner_tags=owner,
        )

    def delete_policy(self, *, infra: Obj) -> str:
        return str((infra.get("spec") or {}).get("deletePolicy") or "Oldest")

    def rolling_update(self, *, infra: Obj) -> tuple[int | str | None, int | str | None] | None:
        """Surge-and-replace limits after a shape change; ``None`` leaves instances alone.

        As CAPA, a pool replaces out-of-date instances by default (CAPA with an instance
        refresh, we with our own surge-and-replace: ``strategy.rollingUpdate``, default surge
        1, unavailable 0). Not with ``strategy.type: InstanceRefresh`` (AWS does it) or with
        ``refreshPreferences.disable``.
        """
        spec = infra.get("spec") or {}
        strategy = spec.get("strategy") or {}
        if strategy.get("type") == "InstanceRefresh":
            return None
        if (spec.get("refreshPreferences") or {}).get("disable"):
            return None
        rolling = strategy.get("rollingUpdate") or {}
        return rolling.get("maxSurge"), rolling.get("maxUnavailable")

    def size_bounds(self, *, infra: Obj) -> tuple[int, int | None]:
        spec = infra.get("spec") or {}
        low = spec.get("minSize")
        high = spec.get("maxSize")
        # CAPA's defaults (the CRD applies them too): minSize 1, maxSize 1.
        return (int(low) if low is not None else 1), (int(high) if high is not None else 1)

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _seconds(value: Any, *, field: str) -> int:
        try:
            return parse_duration_seconds(value)
        except ValueError:
            raise PermanentError(
                f"{field}: {value!r} is not a duration (examples: 300s, 5m, 1h)",
                code="InvalidConfiguration",
            ) from None

    def _hook(self, hook: Obj) -> Obj:
        out = {k: v for k, v in hook.items() if k != "heartbeatTimeout"}
        if hook.get("heartbeatTimeout"):
            out["heartbeatTimeout"] = self._seconds(
                hook["heartbeatTimeout"],
                field=f"lifecycleHooks[{hook.get('name')}].heartbeatTimeout",
            )
        return out

    @staticmethod
    def _processes(suspend: Obj | None) -> list[str]:
        if not suspend:
            return []
        if suspend.get("all"):
            return list(PROCESSES)
        chosen = suspend.get("processes") or {}
        return sorted(_PROCESS_NAMES[k] for k, on in chosen.items() if on and k in _PROCESS_NAMES)

    def _bootstrap_data(self, pool: Obj) -> bytes:
        if self.secrets is None:
            return b""
        namespace = pool["metadata"]["namespace"]
        template = ((pool.get("spec") or {}).get("template") or {}).get("spec") or {}
        name = (template.get("bootstrap") or {}).get("dataSecretName")
        if not name:
            raise PermanentError(
                f"MachinePool {pool['metadata']['name']} has no bootstrap data Secret yet",
                code="BootstrapDataNotFound",
            )
        secret = self.secrets.store.get(f"{namespace}/{name}")
        if secret is None:
            raise PermanentError(
                f"bootstrap data Secret {namespace}/{name} not found (it needs the "
                "cluster.x-k8s.io/cluster-name label)",
                code="BootstrapDataNotFound",
            )
        value = (secret.get("data") or {}).get("value")
        if value is None:
            raise PermanentError(
                f"bootstrap data Secret {namespace}/{name} has no `value` key",
                code="BootstrapDataNotFound",
            )
        try:
            return base64.b64decode(value)
        except (binascii.Error, ValueError):
            raise PermanentError(
                f"bootstrap data Secret {namespace}/{name}: `value` is not base64",
                code="BootstrapDataNotFound",
            ) from None
