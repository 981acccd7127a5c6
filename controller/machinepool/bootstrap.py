"""Bootstrap: is the pool's bootstrap data ready, and where is it?

Either ``template.spec.bootstrap.dataSecretName`` names a Secret the user provides (ready as
soon as that Secret exists: looked up in the cache of Secrets labelled with a cluster name,
else with one GET, since user Secrets often carry no labels), or ``configRef`` points at a
bootstrap config (e.g. a KubeadmConfig) that publishes ``status.dataSecretName`` once its
data is created (``status.initialization.dataSecretCreated`` in the v1beta2 contract,
``status.ready`` in v1beta1).

Writes ``status.initialization.bootstrapDataSecretCreated`` and the ``BootstrapConfigReady``
condition (v1beta2) / ``BootstrapReady`` (v1beta1). A missing config or Secret is a
condition with a reason and a Warning Event, cleared when the object appears (its watch
event, or the Secret's, re-queues the pool). A ``configRef`` whose kind is not served or is
not a Cluster API bootstrap kind (:mod:`.contract`) is ``InvalidConfigRef``; a config
controlled by another object is ``AlreadyOwned`` and is neither written nor read.
"""

from __future__ import annotations

from controller.machinepool.contract import Role
from controller.machinepool.external import ExternalObjects, OwnedByAnotherError
from controller.machinepool.scope import PoolScope
from controller.runtime.conditions import Cond
from controller.runtime.informer import Informer
from controller.runtime.kube import SECRETS, ApiError, KubeClient


async def reconcile_bootstrap(
    *, scope: PoolScope, external: ExternalObjects, secrets: Informer | None
) -> bool:
    """Returns True when bootstrap data is ready."""
    bootstrap = scope.pool.spec.template.spec.bootstrap
    init = scope.status.setdefault("initialization", {})
    if bootstrap.config_ref is not None:
        ref = bootstrap.config_ref
        try:
            config = await external.get(namespace=scope.namespace, ref=ref, role=Role.BOOTSTRAP)
        except LookupError as exc:  # not served, or not a bootstrap contract kind
            scope.requeue(60.0)
            return _not_ready(scope, reason="InvalidConfigRef", message=str(exc), warn=True)
        if config is None:
            scope.requeue(15.0)
            return _not_ready(
                scope,
                reason="BootstrapConfigNotFound",
                message=f"{ref.kind} {scope.namespace}/{ref.name} not found",
                warn=True,
            )
        try:
            await external.ensure_owned(
                obj=config, owner=scope.obj, cluster_name=scope.pool.spec.cluster_name,
                ref=ref, role=Role.BOOTSTRAP,
            )  # fmt: skip
        except OwnedByAnotherError as exc:
            scope.requeue(60.0)
            return _not_ready(scope, reason="AlreadyOwned", message=str(exc), warn=True)
        status = config.get("status") or {}
        created = bool((status.get("initialization") or {}).get("dataSecretCreated")) or bool(
            status.get("ready")
        )
        secret_name = status.get("dataSecretName")
        if not created or not secret_name:
            init["bootstrapDataSecretCreated"] = False
            # Bootstrap config kinds are not watched yet (no dynamic informers): poll.
            scope.requeue(10.0)
            return _not_ready(
                scope,
                reason="WaitingForDataSecret",
                message=f"waiting for {ref.kind} {ref.name} to create the bootstrap data",
                warn=False,
            )
        template_spec = scope.spec_patch.setdefault("template", {}).setdefault("spec", {})
        if bootstrap.data_secret_name != secret_name:
            template_spec.setdefault("bootstrap", {})["dataSecretName"] = secret_name
    elif bootstrap.data_secret_name:
        key = f"{scope.namespace}/{bootstrap.data_secret_name}"
        if not await _secret_exists(
            kube=external.kube, secrets=secrets, namespace=scope.namespace,
            name=bootstrap.data_secret_name,
        ):  # fmt: skip
            init["bootstrapDataSecretCreated"] = False
            # A labelled Secret's arrival re-queues the pool; an unlabelled one is not
            # watched, so look again in a while.
            scope.requeue(15.0)
            return _not_ready(
                scope,
                reason="BootstrapSecretNotFound",
                message=f"bootstrap data Secret {key} not found",
                warn=True,
            )
    else:
        return _not_ready(
            scope,
            reason="InvalidConfiguration",
            message="spec.template.spec.bootstrap needs configRef or dataSecretName",
            warn=True,
        )
    init["bootstrapDataSecretCreated"] = True
    scope.condition(Cond(type="BootstrapConfigReady", status="True", reason="Ready"))
    scope.v1beta1_condition(Cond(type="BootstrapReady", status="True", reason=""))
    return True


async def _secret_exists(
    *, kube: KubeClient, secrets: Informer | None, namespace: str, name: str
) -> bool:
    """From the cache of labelled Secrets when it has it, else one GET (user Secrets often
    carry no labels)."""
    if secrets is not None and f"{namespace}/{name}" in secrets.store:
        return True
    try:
        await kube.get(SECRETS, namespace=namespace, name=name)
    except ApiError as exc:
        if exc.not_found:
            return False
        raise
    return True


def _not_ready(scope: PoolScope, *, reason: str, message: str, warn: bool) -> bool:
    scope.status.setdefault("initialization", {})["bootstrapDataSecretCreated"] = False
    scope.not_ready(
        condition="BootstrapConfigReady",
        v1beta1="BootstrapReady",
        reason=reason,
        message=message,
        severity="Warning" if warn else "Info",
    )
    return False
