"""EC2 launch templates: one per group, a new version only when something changed.

The template is named after the group. Its data comes from the pool's ``launchTemplate``
(image, instance type, instance profile, key pair, root volume, security groups), the
bootstrap data as user data, and the instance tags (cluster ownership, ``additionalTags``,
and :data:`VERSION_TAG`, the pool's template version, which is how an instance tells which
version of the *shape* it was launched from: the Auto Scaling API reports only numbers).

Each version's description is ``<shape version>/<data hash>``. A reconcile compares it with
what it would write: equal means no call at all (the last one seen is remembered in memory;
after a restart one ``DescribeLaunchTemplateVersions`` per template re-learns it). A
difference creates a version, makes it the default, and prunes: versions older than the
newest ``keep`` are deleted, so a long-lived pool never nears AWS's 10,000-version limit.
Pruning is best effort: a failure is logged and counted and never blocks a reconcile.

A change of user data alone (a rotated bootstrap token) makes a new version but keeps the
shape version, so instances are not reported out of date by it (as CAPA, which does not
refresh instances for user data).

Ownership: a template this process did not create is looked up with
``DescribeLaunchTemplates`` (which reports its tags) before anything is written to it; one
without every ``owner_tags`` tag is someone else's, and :meth:`LaunchTemplates.ensure` and
:meth:`LaunchTemplates.delete` raise
:class:`~controller.providers.base.GroupOwnedByOthersError` without touching it.

Failure: AWS errors propagate as the typed provider errors. A template that vanished behind
our back, or one an earlier attempt created without our seeing the answer, is a
:class:`~controller.providers.base.RetryableError`, and the next reconcile looks it up again.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from controller.providers.aws.client import AwsApi
from controller.providers.base import (
    GroupOwnedByOthersError,
    PermanentError,
    ProviderError,
    RetryableError,
    owned,
)

__all__ = ["VERSION_TAG", "LaunchTemplates", "LtState", "template_data"]

_log = structlog.get_logger(__name__)

#: Instance tag carrying the pool's template (shape) version.
VERSION_TAG = "machinepool.cluster.x-k8s.io/template-version"
_NOT_FOUND = frozenset(
    {
        "InvalidLaunchTemplateName.NotFoundException",
        "InvalidLaunchTemplateId.NotFound",
        "InvalidLaunchTemplateId.Malformed",
        "InvalidLaunchTemplateName.MalformedException",
    }
)
_DEFAULT_ROOT_DEVICE = "/dev/xvda"


@dataclass(frozen=True, slots=True)
class LtState:
    """What we know of a group's launch template."""

    id: str
    latest: int
    description: str

    @property
    def shape_version(self) -> str:
        return self.description.split("/", 1)[0]


def template_data(
    *, launch: Mapping[str, Any], user_data: bytes, tags: Mapping[str, str], version: str
) -> dict[str, Any]:
    """``LaunchTemplateData`` for the pool's ``launchTemplate`` (our plain-data form)."""
    data: dict[str, Any] = {}
    if launch.get("imageId"):
        data["ImageId"] = launch["imageId"]
    if launch.get("instanceType"):
        data["InstanceType"] = launch["instanceType"]
    if launch.get("iamInstanceProfile"):
        data["IamInstanceProfile"] = {"Name": launch["iamInstanceProfile"]}
    if launch.get("sshKeyName"):
        data["KeyName"] = launch["sshKeyName"]
    root = launch.get("rootVolume")
    if root:
        ebs: dict[str, Any] = {"VolumeSize": int(root["size"]), "DeleteOnTermination": True}
        if root.get("type"):
            ebs["VolumeType"] = root["type"]
        data["BlockDeviceMappings"] = [
            {"DeviceName": root.get("deviceName") or _DEFAULT_ROOT_DEVICE, "Ebs": ebs}
        ]
    if launch.get("securityGroupIds"):
        data["SecurityGroupIds"] = list(launch["securityGroupIds"])
    if user_data:
        data["UserData"] = base64.b64encode(user_data).decode()
    instance_tags = [
        {"Key": k, "Value": v} for k, v in sorted({**tags, VERSION_TAG: version}.items())
    ]
    volume_tags = [t for t in instance_tags if t["Key"] != VERSION_TAG]
    data["TagSpecifications"] = [{"ResourceType": "instance", "Tags": instance_tags}]
    if volume_tags:
        data["TagSpecifications"].append({"ResourceType": "volume", "Tags": volume_tags})
    return data


def description_for(*, data: Mapping[str, Any], version: str) -> str:
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:20]
    return f"{version}/{digest}"


class LaunchTemplates:
    """Launch templates of one region; see the module docstring."""

    def __init__(self, *, api: AwsApi, keep: int = 3) -> None:
        self.api = api
        self.keep = keep
        self._known: dict[str, LtState] = {}

    def known(self, name: str) -> LtState | None:
        return self._known.get(name)

    async def ensure(
        self,
        *,
        name: str,
        data: dict[str, Any],
        version: str,
        tags: Mapping[str, str],
        owner_tags: Mapping[str, str],
    ) -> tuple[LtState, bool]:
        """The template at the wanted data; True when a version was created."""
        description = description_for(data=data, version=version)
        state = self._known.get(name) or await self._lookup(name, owner_tags=owner_tags)
        if state is not None and state.description == description:
            return state, False
        if state is None:
            tagging: dict[str, Any] = {}
            if tags:
                tagging["TagSpecifications"] = [
                    {
                        "ResourceType": "launch-template",
                        "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())],
                    }
                ]
            try:
                created = await self.api.call(
                    "ec2",
                    "CreateLaunchTemplate",
                    LaunchTemplateName=name,
                    VersionDescription=description,
                    LaunchTemplateData=data,
                    **tagging,
                )
            except PermanentError as exc:
                if exc.code != "InvalidLaunchTemplateName.AlreadyExistsException":
                    raise
                # Made by an earlier attempt whose answer we lost: look again next time.
                raise RetryableError(exc.message, code=exc.code, retry_after=1.0) from None
            template = created["LaunchTemplate"]
            state = LtState(
                id=str(template["LaunchTemplateId"]),
                latest=int(template["LatestVersionNumber"]),
                description=description,
            )
            self._known[name] = state
            return state, True
        try:
            made = await self.api.call(
                "ec2",
                "CreateLaunchTemplateVersion",
                LaunchTemplateId=state.id,
                VersionDescription=description,
                LaunchTemplateData=data,
            )
        except PermanentError as exc:
            if exc.code not in _NOT_FOUND:
                raise
            # Deleted behind our back: forget it; the next reconcile creates it again.
            self._known.pop(name, None)
            raise RetryableError(exc.message, code=exc.code, retry_after=1.0) from None
        number = int(made["LaunchTemplateVersion"]["VersionNumber"])
        await self.api.call(
            "ec2", "ModifyLaunchTemplate", LaunchTemplateId=state.id, DefaultVersion=str(number)
        )
        state = LtState(id=state.id, latest=number, description=description)
        self._known[name] = state
        await self.prune(state)
        return state, True

    async def prune(self, state: LtState) -> None:
        """Delete versions older than the newest ``keep`` (best effort)."""
        oldest_kept = state.latest - self.keep + 1
        if oldest_kept <= 1:
            return
        try:
            listed = await self.api.call(
                "ec2",
                "DescribeLaunchTemplateVersions",
                LaunchTemplateId=state.id,
                MaxVersion=str(oldest_kept - 1),
                MaxResults=200,
            )
            old = [
                str(v["VersionNumber"])
                for v in listed.get("LaunchTemplateVersions") or []
                if int(v["VersionNumber"]) < oldest_kept and not v.get("DefaultVersion")
            ]
            if old:
                await self.api.call(
                    "ec2", "DeleteLaunchTemplateVersions", LaunchTemplateId=state.id, Versions=old
                )
        except ProviderError as exc:
            _log.warning(
                "could not prune old launch template versions",
                launch_template=state.id,
                code=exc.code,
                error=exc.message,
            )

    async def delete(self, *, name: str, owner_tags: Mapping[str, str]) -> None:
        """Delete the template; already gone is fine; not ours is GroupOwnedByOthersError.

        Looked up by name first and deleted by ID: an unknown name is then a clear
        "not found" from every implementation (moto answers a delete by unknown name with
        ``MissingParameter``).
        """
        self._known.pop(name, None)
        try:
            listed = await self.api.call(
                "ec2", "DescribeLaunchTemplates", LaunchTemplateNames=[name]
            )
            templates = listed.get("LaunchTemplates") or []
            if not templates:
                return
            _check_owner(templates[0], name=name, owner_tags=owner_tags)
            await self.api.call(
                "ec2", "DeleteLaunchTemplate", LaunchTemplateId=templates[0]["LaunchTemplateId"]
            )
        except PermanentError as exc:
            if exc.code not in _NOT_FOUND:
                raise

    async def _lookup(self, name: str, *, owner_tags: Mapping[str, str]) -> LtState | None:
        try:
            found = await self.api.call(
                "ec2", "DescribeLaunchTemplates", LaunchTemplateNames=[name]
            )
            templates = found.get("LaunchTemplates") or []
            if not templates:
                return None
            _check_owner(templates[0], name=name, owner_tags=owner_tags)
            listed = await self.api.call(
                "ec2",
                "DescribeLaunchTemplateVersions",
                LaunchTemplateId=templates[0]["LaunchTemplateId"],
                Versions=["$Latest"],
            )
        except PermanentError as exc:
            if exc.code in _NOT_FOUND:
                return None
            raise
        versions = listed.get("LaunchTemplateVersions") or []
        if not versions:
            return None
        latest = versions[0]
        state = LtState(
            id=str(latest["LaunchTemplateId"]),
            latest=int(latest["VersionNumber"]),
            description=str(latest.get("VersionDescription") or ""),
        )
        self._known[name] = state
        return state


def _check_owner(template: Mapping[str, Any], *, name: str, owner_tags: Mapping[str, str]) -> None:
    tags = {str(t["Key"]): str(t.get("Value", "")) for t in template.get("Tags") or []}
    if not owned(tags=tags, owner_tags=owner_tags):
        raise GroupOwnedByOthersError(
            f"launch template {name} exists but its tags do not show it belongs to this pool"
        )
