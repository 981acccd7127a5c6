"""The AWS instance group provider: an EC2 Auto Scaling group plus its launch template.

Implements :class:`~controller.providers.base.InstanceGroupProvider` for one region.
The group and its launch template are both named ``GroupSpec.name``. ``GroupSpec.template``
is the plain-data form the AWS adapter builds (:mod:`controller.providers.aws.adapter`):
``launchTemplate``, ``subnets``, ``capacityRebalance``, ``mixedInstancesPolicy``,
``suspendProcesses``, ``lifecycleHooks``, ``defaultCooldown``, ``defaultInstanceWarmup``,
``instanceRefresh``.

Calls, per :meth:`AwsProvider.ensure_group`:

- the group from the region's shared :class:`~controller.providers.aws.describe.GroupDescriber`
  (one batched ``DescribeAutoScalingGroups`` serves every pool);
- the launch template (:mod:`~controller.providers.aws.launchtemplate`): no call when unchanged;
- ``CreateAutoScalingGroup`` when missing (desired capacity = ``minSize``; the reconciler
  then sets it), else ``UpdateAutoScalingGroup`` only when min/max, subnets or zones,
  capacity rebalance, cooldown, or the launch template / mixed instances policy differ
  (never the desired capacity);
- ``CreateOrUpdateTags`` for missing or changed group tags, and ``DeleteTags`` for the tags
  of ``GroupSpec.applied_tag_keys`` (what the caller applied last time) that the spec no
  longer has and the group still carries; a tag we never applied (one a person added) is
  never removed;
- ``SuspendProcesses``/``ResumeProcesses`` to match ``suspendProcesses``;
- lifecycle hooks converged with ``PutLifecycleHook``/``DeleteLifecycleHook`` (looked up
  with ``DescribeLifecycleHooks`` only when the wanted hooks differ from what this process
  last applied);
- ``StartInstanceRefresh`` after a shape change, only with the ``InstanceRefresh`` strategy.

So a converged pool costs no write and, apart from its share of the batched describe, no
read. Scale-out is ``SetDesiredCapacity``; scale-in is
``TerminateInstanceInAutoScalingGroup(ShouldDecrementDesiredCapacity=true)`` on the
instance the reconciler chose. Provider IDs are ``aws:///<zone>/<instance-id>``.

Instances: state from the group, launch time, template version and addresses from the
one ``DescribeInstances`` each new instance costs (:class:`~.describe.InstanceDetails`).
Addresses follow CAPA: ``InternalIP`` (private IP), ``InternalDNS`` (private DNS name),
``ExternalIP`` (public IP), ``ExternalDNS`` (public DNS name), each only when non-empty.

Ownership: the group's tags come with the batched describe, so checking them costs no call.
A group or launch template of ``GroupSpec.name`` without every ``GroupSpec.owner_tags`` tag
is :class:`~controller.providers.base.GroupOwnedByOthersError` before any write, in
``ensure_group`` and in ``delete_group`` alike: it is never adopted, updated or deleted.

Deletion: ``DeleteAutoScalingGroup(ForceDelete=true)``; while AWS reports the delete in
progress a :class:`~controller.providers.base.RetryableError` asks to come back; once the
group is gone, ``DeleteLaunchTemplate``. A group or template already gone is success.

Failure: errors are the typed provider errors of :mod:`controller.providers.aws.client`;
a group that vanished is :class:`~controller.providers.base.GroupNotFoundError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, cast

import structlog
from prometheus_client import CollectorRegistry

from controller.providers.aws.client import AwsApi
from controller.providers.aws.describe import Ec2Instance, GroupDescriber, InstanceDetails
from controller.providers.aws.launchtemplate import (
    VERSION_TAG,
    LaunchTemplates,
    LtState,
    template_data,
)
from controller.providers.base import (
    Address,
    AddressType,
    GroupNotFoundError,
    GroupOwnedByOthersError,
    GroupSpec,
    GroupStatus,
    Instance,
    InstanceState,
    PermanentError,
    RetryableError,
    owned,
)
from controller.runtime.metrics import REGISTRY
from controller.runtime.store import Obj

__all__ = ["PROCESSES", "AwsProvider", "provider_id"]

_log = structlog.get_logger(__name__)

#: Auto Scaling processes ``suspendProcesses`` can name.
PROCESSES = (
    "Launch",
    "Terminate",
    "AddToLoadBalancer",
    "AlarmNotification",
    "AZRebalance",
    "HealthCheck",
    "InstanceRefresh",
    "ReplaceUnhealthy",
    "ScheduledActions",
)
_NO_MAX = 10000
#: Shape fields AWS reports only once set.
_OPTIONAL_SHAPE = frozenset({"DefaultCooldown", "DefaultInstanceWarmup"})


def _tmpl(spec: GroupSpec) -> Mapping[str, Any]:
    """The AWS adapter's plain-data template (JSON-like values)."""
    return cast(Mapping[str, Any], spec.template)


def provider_id(*, zone: str, instance_id: str) -> str:
    """The provider ID the AWS cloud-controller-manager gives the instance's Node."""
    return f"aws:///{zone}/{instance_id}"


def _state(lifecycle: str, health: str) -> InstanceState:
    if lifecycle == "InService":
        return "failed" if health == "Unhealthy" else "running"
    if lifecycle.startswith(("Terminat", "Detach")):
        return "terminating"
    return "pending"


def _addresses(found: Ec2Instance | None) -> tuple[Address, ...]:
    """CAPA's ``AWSMachine.status.addresses``: the EC2 addresses that are set."""
    if found is None:
        return ()
    pairs: tuple[tuple[AddressType, str | None], ...] = (
        ("InternalIP", found.private_ip),
        ("InternalDNS", found.private_dns),
        ("ExternalIP", found.public_ip),
        ("ExternalDNS", found.public_dns),
    )
    return tuple(Address(type=kind, address=value) for kind, value in pairs if value)


def _not_found(exc: PermanentError) -> bool:
    return exc.code == "ValidationError" and "not found" in exc.message.lower()


def _check_owner(group: Obj, *, owner_tags: Mapping[str, str]) -> None:
    tags = {str(t["Key"]): str(t.get("Value", "")) for t in group.get("Tags") or []}
    if not owned(tags=tags, owner_tags=owner_tags):
        raise GroupOwnedByOthersError(
            f"Auto Scaling group {group['AutoScalingGroupName']} exists but its tags do not "
            "show it belongs to this pool"
        )


def _mixed_policy(mip: Mapping[str, Any], lt: LtState) -> Obj:
    policy: Obj = {
        "LaunchTemplate": {
            "LaunchTemplateSpecification": {"LaunchTemplateId": lt.id, "Version": "$Latest"},
            "Overrides": [{"InstanceType": o["instanceType"]} for o in mip.get("overrides") or []],
        }
    }
    dist = mip.get("instancesDistribution") or {}
    names = {
        "onDemandAllocationStrategy": "OnDemandAllocationStrategy",
        "spotAllocationStrategy": "SpotAllocationStrategy",
        "onDemandBaseCapacity": "OnDemandBaseCapacity",
        "onDemandPercentageAboveBaseCapacity": "OnDemandPercentageAboveBaseCapacity",
    }
    distribution = {aws: dist[ours] for ours, aws in names.items() if dist.get(ours) is not None}
    if distribution:
        policy["InstancesDistribution"] = distribution
    return policy


def _mixed_policy_matches(want: Obj, have: Obj | None) -> bool:
    if have is None:
        return False
    lt_want = want["LaunchTemplate"]
    lt_have = have.get("LaunchTemplate") or {}
    spec_have = lt_have.get("LaunchTemplateSpecification") or {}
    spec_want = lt_want["LaunchTemplateSpecification"]
    if spec_have.get("LaunchTemplateId") != spec_want["LaunchTemplateId"]:
        return False
    if spec_have.get("Version") != spec_want["Version"]:
        return False
    types_have = [o.get("InstanceType") for o in lt_have.get("Overrides") or []]
    if types_have != [o["InstanceType"] for o in lt_want["Overrides"]]:
        return False
    dist_have = have.get("InstancesDistribution") or {}
    return all(dist_have.get(k) == v for k, v in (want.get("InstancesDistribution") or {}).items())


def _hook_params(hook: Mapping[str, Any]) -> Obj:
    params: Obj = {
        "LifecycleHookName": hook["name"],
        "LifecycleTransition": hook["lifecycleTransition"],
        "HeartbeatTimeout": int(hook.get("heartbeatTimeout") or 3600),
        "DefaultResult": hook.get("defaultResult") or "ABANDON",
    }
    for ours, aws in (
        ("notificationTargetARN", "NotificationTargetARN"),
        ("roleARN", "RoleARN"),
        ("notificationMetadata", "NotificationMetadata"),
    ):
        if hook.get(ours):
            params[aws] = hook[ours]
    return params


class AwsProvider:
    """:class:`~controller.providers.base.InstanceGroupProvider` for EC2 Auto Scaling groups."""

    def __init__(
        self,
        *,
        region: str,
        endpoint_url: str | None = None,
        registry: CollectorRegistry = REGISTRY,
        poll_interval: float = 60.0,
        busy_interval: float = 2.0,
        api: AwsApi | None = None,
        keep_template_versions: int = 3,
    ) -> None:
        self.api = api or AwsApi(region=region, endpoint_url=endpoint_url, registry=registry)
        self._owns_api = api is None
        self.groups = GroupDescriber(api=self.api, ttl=poll_interval, busy_ttl=busy_interval)
        self.details = InstanceDetails(api=self.api)
        self.templates = LaunchTemplates(api=self.api, keep=keep_template_versions)
        self._hooks_applied: dict[str, str] = {}
        self._members: dict[str, set[str]] = {}
        self._first_seen: dict[str, datetime] = {}
        self._refresh_wanted: dict[str, str] = {}
        self._shape_sent: dict[str, Obj] = {}

    async def __aenter__(self) -> Self:
        if self._owns_api:
            await self.api.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.groups.close()
        await self.details.close()
        if self._owns_api:
            await self.api.__aexit__(exc_type, exc, tb)

    # ------------------------------------------------------------ protocol

    async def ensure_group(self, *, spec: GroupSpec) -> GroupStatus:
        tmpl = _tmpl(spec)
        name = spec.name
        group = await self.groups.get(name)
        if group is not None:
            _check_owner(group, owner_tags=spec.owner_tags)
        if group is not None and group.get("Status"):
            raise RetryableError(
                f"group {name} is being deleted ({group['Status']})",
                code="DeleteInProgress",
                retry_after=10.0,
            )
        data = template_data(
            launch=tmpl.get("launchTemplate") or {},
            user_data=spec.bootstrap_data,
            tags=spec.tags,
            version=spec.template_version,
        )
        previous = self.templates.known(name)
        lt, lt_changed = await self.templates.ensure(
            name=name,
            data=data,
            version=spec.template_version,
            tags=spec.tags,
            owner_tags=spec.owner_tags,
        )
        wrote = False
        if group is None:
            await self._create(spec, lt)
            self._hooks_applied[name] = "[]"
            wrote = True
        else:
            wrote |= await self._update(spec, lt, group)
            wrote |= await self._tags(spec, group)
            wrote |= await self._processes(spec, group)
        wrote |= await self._hooks(spec)
        if (
            lt_changed
            and previous is not None
            and previous.shape_version != lt.shape_version
            and (tmpl.get("instanceRefresh") or {}).get("enabled")
        ):
            self._refresh_wanted[name] = lt.shape_version
        if name in self._refresh_wanted:
            wrote |= await self._start_refresh(spec)
        if wrote:
            self.groups.invalidate(name)
            group = await self.groups.get(name)
            if group is None:
                raise RetryableError(
                    f"group {name} not visible yet", code="GroupNotVisible", retry_after=2.0
                )
        assert group is not None
        return await self._status(group, lt)

    async def describe_group(self, *, name: str) -> GroupStatus:
        group = await self.groups.get(name)
        if group is None:
            raise GroupNotFoundError(f"Auto Scaling group {name} not found", code="GroupNotFound")
        return await self._status(group, self.templates.known(name))

    async def set_capacity(self, *, name: str, desired: int) -> None:
        try:
            await self.api.call(
                "autoscaling",
                "SetDesiredCapacity",
                AutoScalingGroupName=name,
                DesiredCapacity=desired,
                HonorCooldown=False,
            )
        except PermanentError as exc:
            if _not_found(exc):
                raise GroupNotFoundError(exc.message, code="GroupNotFound") from None
            raise
        finally:
            self.groups.invalidate(name)

    async def delete_instance(self, *, name: str, instance_id: str, shrink: bool) -> None:
        try:
            await self.api.call(
                "autoscaling",
                "TerminateInstanceInAutoScalingGroup",
                InstanceId=instance_id,
                ShouldDecrementDesiredCapacity=shrink,
            )
        except PermanentError as exc:
            if not _not_found(exc):
                raise
            _log.info("instance already gone", group=name, instance=instance_id)
        finally:
            self.groups.invalidate(name)

    async def delete_group(self, *, name: str, owner_tags: Mapping[str, str]) -> None:
        group = await self.groups.get(name, fresh=True)
        if group is not None:
            _check_owner(group, owner_tags=owner_tags)
            if not group.get("Status"):
                try:
                    await self.api.call(
                        "autoscaling",
                        "DeleteAutoScalingGroup",
                        AutoScalingGroupName=name,
                        ForceDelete=True,
                    )
                except PermanentError as exc:
                    if not _not_found(exc):
                        raise
            group = await self.groups.get(name, fresh=True)
            if group is not None:
                raise RetryableError(
                    f"group {name} is being deleted", code="DeleteInProgress", retry_after=5.0
                )
        await self.templates.delete(name=name, owner_tags=owner_tags)
        self.groups.forget(name)
        self.details.drop(self._members.pop(name, set()))
        self._hooks_applied.pop(name, None)
        self._refresh_wanted.pop(name, None)
        self._shape_sent.pop(name, None)

    # ------------------------------------------------------------ steps

    def _placement(self, spec: GroupSpec) -> Obj:
        subnets = list(_tmpl(spec).get("subnets") or [])
        if subnets:
            return {"VPCZoneIdentifier": ",".join(subnets)}
        if spec.zones:
            return {"AvailabilityZones": list(spec.zones)}
        return {}

    def _launch(self, spec: GroupSpec, lt: LtState) -> Obj:
        mip = _tmpl(spec).get("mixedInstancesPolicy")
        if mip:
            return {"MixedInstancesPolicy": _mixed_policy(mip, lt)}
        return {"LaunchTemplate": {"LaunchTemplateId": lt.id, "Version": "$Latest"}}

    def _shape(self, spec: GroupSpec) -> Obj:
        tmpl = _tmpl(spec)
        params: Obj = {
            "MinSize": spec.min_size,
            "MaxSize": spec.max_size if spec.max_size is not None else _NO_MAX,
            "CapacityRebalance": bool(tmpl.get("capacityRebalance")),
        }
        if tmpl.get("defaultCooldown") is not None:
            params["DefaultCooldown"] = int(tmpl["defaultCooldown"])
        if tmpl.get("defaultInstanceWarmup") is not None:
            params["DefaultInstanceWarmup"] = int(tmpl["defaultInstanceWarmup"])
        return params

    async def _create(self, spec: GroupSpec, lt: LtState) -> None:
        self._shape_sent[spec.name] = self._shape(spec)
        await self.api.call(
            "autoscaling",
            "CreateAutoScalingGroup",
            AutoScalingGroupName=spec.name,
            DesiredCapacity=spec.min_size,
            Tags=self._tag_params(spec.name, spec.tags),
            **self._shape(spec),
            **self._placement(spec),
            **self._launch(spec, lt),
        )
        processes = list(_tmpl(spec).get("suspendProcesses") or [])
        if processes:
            await self.api.call(
                "autoscaling",
                "SuspendProcesses",
                AutoScalingGroupName=spec.name,
                ScalingProcesses=processes,
            )

    async def _update(self, spec: GroupSpec, lt: LtState, group: Obj) -> bool:
        shape = self._shape(spec)
        sent = self._shape_sent.get(spec.name, {})
        differs = []
        for key, want in shape.items():
            have = group.get(key)
            if key == "CapacityRebalance":
                have = bool(have)
            elif have is None and key in _OPTIONAL_SHAPE:
                # Not reported (an emulator that ignores the field): what we last sent.
                have = sent.get(key)
            if have != want:
                differs.append(key)
        placement = self._placement(spec)
        if "VPCZoneIdentifier" in placement:
            have = {s for s in str(group.get("VPCZoneIdentifier") or "").split(",") if s}
            if have != set(placement["VPCZoneIdentifier"].split(",")):
                differs.append("VPCZoneIdentifier")
        elif "AvailabilityZones" in placement and set(group.get("AvailabilityZones") or []) != set(
            placement["AvailabilityZones"]
        ):
            differs.append("AvailabilityZones")
        launch = self._launch(spec, lt)
        if "MixedInstancesPolicy" in launch:
            if not _mixed_policy_matches(
                launch["MixedInstancesPolicy"], group.get("MixedInstancesPolicy")
            ):
                differs.append("MixedInstancesPolicy")
        else:
            have_lt = group.get("LaunchTemplate") or {}
            if (
                have_lt.get("LaunchTemplateId") != lt.id
                or have_lt.get("Version") != "$Latest"
                or group.get("MixedInstancesPolicy")
            ):
                differs.append("LaunchTemplate")
        if not differs:
            return False
        _log.info("updating Auto Scaling group", group=spec.name, fields=sorted(differs))
        await self.api.call(
            "autoscaling",
            "UpdateAutoScalingGroup",
            AutoScalingGroupName=spec.name,
            **shape,
            **placement,
            **launch,
        )
        self._shape_sent[spec.name] = shape
        return True

    @staticmethod
    def _tag_params(name: str, tags: Mapping[str, str]) -> list[Obj]:
        return [
            {
                "ResourceId": name,
                "ResourceType": "auto-scaling-group",
                "Key": key,
                "Value": value,
                "PropagateAtLaunch": False,
            }
            for key, value in sorted(tags.items())
        ]

    async def _tags(self, spec: GroupSpec, group: Obj) -> bool:
        have = {t["Key"]: t.get("Value") for t in group.get("Tags") or []}
        missing = {k: v for k, v in spec.tags.items() if have.get(k) != v}
        removed = sorted(k for k in spec.applied_tag_keys if k not in spec.tags and k in have)
        if missing:
            await self.api.call(
                "autoscaling", "CreateOrUpdateTags", Tags=self._tag_params(spec.name, missing)
            )
        if removed:
            _log.info("removing tags dropped from the spec", group=spec.name, keys=removed)
            await self.api.call(
                "autoscaling",
                "DeleteTags",
                Tags=[
                    {"ResourceId": spec.name, "ResourceType": "auto-scaling-group", "Key": key}
                    for key in removed
                ],
            )
        return bool(missing or removed)

    async def _processes(self, spec: GroupSpec, group: Obj) -> bool:
        want = set(_tmpl(spec).get("suspendProcesses") or [])
        have = {p["ProcessName"] for p in group.get("SuspendedProcesses") or []}
        suspend = sorted(want - have)
        resume = sorted((have - want) & set(PROCESSES))
        if suspend:
            await self.api.call(
                "autoscaling",
                "SuspendProcesses",
                AutoScalingGroupName=spec.name,
                ScalingProcesses=suspend,
            )
        if resume:
            await self.api.call(
                "autoscaling",
                "ResumeProcesses",
                AutoScalingGroupName=spec.name,
                ScalingProcesses=resume,
            )
        return bool(suspend or resume)

    async def _hooks(self, spec: GroupSpec) -> bool:
        want = [_hook_params(h) for h in _tmpl(spec).get("lifecycleHooks") or []]
        key = json.dumps(want, sort_keys=True)
        if self._hooks_applied.get(spec.name) == key:
            return False
        listed = await self.api.call(
            "autoscaling", "DescribeLifecycleHooks", AutoScalingGroupName=spec.name
        )
        have = {h["LifecycleHookName"]: h for h in listed.get("LifecycleHooks") or []}
        wrote = False
        for hook in want:
            current = have.get(hook["LifecycleHookName"])
            if current is None or any(current.get(k) != v for k, v in hook.items()):
                await self.api.call(
                    "autoscaling", "PutLifecycleHook", AutoScalingGroupName=spec.name, **hook
                )
                wrote = True
        for hook_name in set(have) - {h["LifecycleHookName"] for h in want}:
            await self.api.call(
                "autoscaling",
                "DeleteLifecycleHook",
                AutoScalingGroupName=spec.name,
                LifecycleHookName=hook_name,
            )
            wrote = True
        self._hooks_applied[spec.name] = key
        return wrote

    async def _start_refresh(self, spec: GroupSpec) -> bool:
        refresh = _tmpl(spec).get("instanceRefresh") or {}
        preferences: Obj = {}
        for ours, aws in (
            ("minHealthyPercentage", "MinHealthyPercentage"),
            ("maxHealthyPercentage", "MaxHealthyPercentage"),
            ("instanceWarmup", "InstanceWarmup"),
        ):
            if refresh.get(ours) is not None:
                preferences[aws] = int(refresh[ours])
        params: Obj = {"AutoScalingGroupName": spec.name, "Strategy": "Rolling"}
        if preferences:
            params["Preferences"] = preferences
        try:
            await self.api.call("autoscaling", "StartInstanceRefresh", **params)
        except PermanentError as exc:
            if exc.code != "InstanceRefreshInProgress":
                raise
            # CAPA cancels the running refresh and starts again once it has stopped.
            await self.api.call(
                "autoscaling", "CancelInstanceRefresh", AutoScalingGroupName=spec.name
            )
            raise RetryableError(
                "an instance refresh is still running; cancelled it to start one for the new "
                "launch template",
                code="InstanceRefreshInProgress",
                retry_after=30.0,
            ) from None
        self._refresh_wanted.pop(spec.name, None)
        return True

    async def _status(self, group: Obj, lt: LtState | None) -> GroupStatus:
        name = str(group["AutoScalingGroupName"])
        members = group.get("Instances") or []
        ids = [str(m["InstanceId"]) for m in members]
        details = await self.details.get_many(ids)
        gone = self._members.get(name, set()) - set(ids)
        self.details.drop(gone)
        for instance_id in gone:
            self._first_seen.pop(instance_id, None)
        self._members[name] = set(ids)
        now = datetime.now(UTC)
        instances: list[Instance] = []
        for member in members:
            instance_id = str(member["InstanceId"])
            zone = str(member.get("AvailabilityZone") or "")
            found = details.get(instance_id)
            launched = found.launched_at if found is not None else None
            if launched is None:
                launched = self._first_seen.setdefault(instance_id, now)
            else:
                launched = (
                    launched.replace(tzinfo=UTC)
                    if launched.tzinfo is None
                    else launched.astimezone(UTC)
                )
            version = (found.tags.get(VERSION_TAG) if found is not None else None) or str(
                (member.get("LaunchTemplate") or {}).get("Version") or ""
            )
            instances.append(
                Instance(
                    instance_id=instance_id,
                    provider_id=provider_id(zone=zone, instance_id=instance_id),
                    zone=zone,
                    state=_state(
                        str(member.get("LifecycleState") or ""),
                        str(member.get("HealthStatus") or ""),
                    ),
                    version=version,
                    launched_at=launched,
                    addresses=_addresses(found),
                )
            )
        return GroupStatus(
            name=name,
            desired_capacity=int(group.get("DesiredCapacity") or 0),
            template_version=lt.shape_version if lt is not None else "",
            instances=instances,
        )
