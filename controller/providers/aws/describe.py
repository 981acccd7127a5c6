"""Batched, cached reads: one ``DescribeAutoScalingGroups`` serves every pool of a region.

:class:`GroupDescriber` answers "what does group X look like" for all pools of one region.
Requests that arrive within ``batch_window`` of each other are coalesced into one call (up
to 100 names a call, AWS's limit), and *every* group asked about recently whose cached answer
is older than ``min_age`` rides along. So in steady state, with pools reconciled at staggered
times, the first pool whose cached answer expired refreshes all of them, and the others are
served from the cache until the next expiry: about one call per 100 pools per ``ttl``.

Invariants:

- An answer is at most ``ttl`` old; at most ``busy_ttl`` old for a group in flux (instances
  not in service, fewer or more instances than its desired capacity, a delete in progress).
- After a write, the writer calls :meth:`GroupDescriber.invalidate`; the next read of that
  group goes to AWS (still batched with whatever else is waiting).
- ``None`` means the group does not exist; that is cached like any answer.
- A name not asked about for ``forget_after`` stops riding along.

Failure: a failed call fails every waiter of that batch with the same typed error; nothing
is cached from it, so the next read tries again.

:class:`InstanceDetails` does the same for ``ec2:DescribeInstances`` (launch time, private
and public addresses, our template-version tag), which the Auto Scaling API does not report.
An instance's details do not change for its life, so each instance is described once
(batched, up to 200 IDs a call), then served from memory until
:meth:`InstanceDetails.retain` drops it. (EC2 assigns the private address and DNS name at
launch; a public address EC2 attaches after that one look, or an Elastic IP associated
later, is not seen.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.providers.aws.client import AwsApi
from controller.runtime.store import Obj

__all__ = ["Ec2Instance", "GroupDescriber", "InstanceDetails", "group_in_flux"]

_NAMES_PER_CALL = 100
_IDS_PER_CALL = 200


def group_in_flux(group: Obj) -> bool:
    """True while AWS is still changing the group (worth a fresher look)."""
    instances = group.get("Instances") or []
    if group.get("Status"):
        return True
    if len(instances) != int(group.get("DesiredCapacity") or 0):
        return True
    return any(i.get("LifecycleState") != "InService" for i in instances)


@dataclass(slots=True)
class _Entry:
    fetched_at: float
    group: Obj | None


class GroupDescriber:
    """Coalescing cache of ``DescribeAutoScalingGroups``; see the module docstring."""

    def __init__(
        self,
        *,
        api: AwsApi,
        ttl: float = 60.0,
        busy_ttl: float = 2.0,
        batch_window: float = 0.02,
        min_age: float | None = None,
        forget_after: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.ttl = ttl
        self.busy_ttl = busy_ttl
        self.batch_window = batch_window
        self.min_age = busy_ttl if min_age is None else min_age
        self.forget_after = 3 * ttl if forget_after is None else forget_after
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._interest: dict[str, float] = {}
        self._waiting: dict[str, asyncio.Future[Obj | None]] = {}
        self._inflight: dict[str, asyncio.Future[Obj | None]] = {}
        self._flusher: asyncio.Task[None] | None = None
        #: Calls made, for tests and benchmarks.
        self.calls = 0

    async def get(self, name: str, *, fresh: bool = False) -> Obj | None:
        """The group ``name`` as AWS describes it, or None when it does not exist."""
        now = self._clock()
        self._interest[name] = now
        entry = self._entries.get(name)
        if entry is not None and not fresh:
            limit = self.busy_ttl if entry.group and group_in_flux(entry.group) else self.ttl
            if entry.group is None:
                limit = self.busy_ttl
            if now - entry.fetched_at < limit:
                return entry.group
        # A call already on its way that covers this group answers this read too, unless
        # the read must see our own latest write.
        future = None if fresh else self._inflight.get(name)
        if future is None:
            future = self._waiting.get(name)
        if future is None:
            future = self._waiting[name] = asyncio.get_running_loop().create_future()
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush(), name="aws-describe-groups")
        return await asyncio.shield(future)

    def invalidate(self, name: str) -> None:
        """Our own write changed ``name``: the next read goes to AWS."""
        self._entries.pop(name, None)
        self._inflight.pop(name, None)

    def forget(self, name: str) -> None:
        """``name`` is no longer ours to watch (its pool was deleted)."""
        self._entries.pop(name, None)
        self._interest.pop(name, None)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher

    async def _flush(self) -> None:
        while self._waiting:
            await asyncio.sleep(self.batch_window)
            waiting, self._waiting = self._waiting, {}
            now = self._clock()
            for name, seen in list(self._interest.items()):
                if now - seen > self.forget_after:
                    del self._interest[name]
            names = list(waiting)
            for name in self._interest:
                entry = self._entries.get(name)
                if name not in waiting and (
                    entry is None or now - entry.fetched_at >= self.min_age
                ):
                    names.append(name)
            loop = asyncio.get_running_loop()
            for name in names:
                if name not in waiting:
                    waiting[name] = loop.create_future()
            self._inflight.update(waiting)
            chunks = [names[i : i + _NAMES_PER_CALL] for i in range(0, len(names), _NAMES_PER_CALL)]
            try:
                results = await asyncio.gather(
                    *(self._describe(chunk) for chunk in chunks), return_exceptions=True
                )
            finally:
                for name, future in waiting.items():
                    if self._inflight.get(name) is future:
                        del self._inflight[name]
            for chunk, result in zip(chunks, results, strict=True):
                for name in chunk:
                    future = waiting[name]
                    if isinstance(result, BaseException):
                        if not future.done():
                            future.set_exception(result)
                            future.exception()  # nobody may be waiting: no "never retrieved"
                        continue
                    group = result.get(name)
                    if name in self._interest:  # not forgotten while the call was on its way
                        self._entries[name] = _Entry(fetched_at=now, group=group)
                    if not future.done():
                        future.set_result(group)

    async def _describe(self, names: list[str]) -> dict[str, Obj]:
        found: dict[str, Obj] = {}
        token: str | None = None
        while True:
            params: dict[str, Any] = {"AutoScalingGroupNames": names, "MaxRecords": 100}
            if token:
                params["NextToken"] = token
            self.calls += 1
            page = await self.api.call("autoscaling", "DescribeAutoScalingGroups", **params)
            for group in page.get("AutoScalingGroups") or []:
                found[str(group["AutoScalingGroupName"])] = group
            token = page.get("NextToken")
            if not token:
                return found


@dataclass(frozen=True, slots=True)
class Ec2Instance:
    """What EC2 says about an instance that the Auto Scaling API does not."""

    instance_id: str
    launched_at: datetime | None
    private_ip: str | None
    private_dns: str | None
    tags: dict[str, str]
    public_ip: str | None = None
    public_dns: str | None = None


class InstanceDetails:
    """Coalescing, per-instance cache of ``ec2:DescribeInstances``; see the module docstring."""

    def __init__(self, *, api: AwsApi, batch_window: float = 0.02) -> None:
        self.api = api
        self.batch_window = batch_window
        self._known: dict[str, Ec2Instance] = {}
        self._waiting: dict[str, asyncio.Future[Ec2Instance | None]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self.calls = 0

    async def get_many(self, ids: Iterable[str]) -> dict[str, Ec2Instance]:
        """Details of ``ids``; instances EC2 no longer knows are left out."""
        out: dict[str, Ec2Instance] = {}
        pending: dict[str, asyncio.Future[Ec2Instance | None]] = {}
        for instance_id in ids:
            known = self._known.get(instance_id)
            if known is not None:
                out[instance_id] = known
                continue
            future = self._waiting.get(instance_id)
            if future is None:
                future = self._waiting[instance_id] = asyncio.get_running_loop().create_future()
            pending[instance_id] = future
        if pending:
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush(), name="aws-describe-instances")
            for instance_id, future in pending.items():
                found = await asyncio.shield(future)
                if found is not None:
                    out[instance_id] = found
        return out

    def known(self, instance_id: str) -> Ec2Instance | None:
        """Details already fetched, without a call."""
        return self._known.get(instance_id)

    def retain(self, ids: Iterable[str]) -> None:
        """Forget every instance not in ``ids``."""
        keep = set(ids)
        for instance_id in [i for i in self._known if i not in keep]:
            del self._known[instance_id]

    def drop(self, ids: Iterable[str]) -> None:
        for instance_id in ids:
            self._known.pop(instance_id, None)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher

    async def _flush(self) -> None:
        while self._waiting:
            await asyncio.sleep(self.batch_window)
            waiting, self._waiting = self._waiting, {}
            ids = list(waiting)
            for start in range(0, len(ids), _IDS_PER_CALL):
                chunk = ids[start : start + _IDS_PER_CALL]
                try:
                    found = await self._describe(chunk)
                except Exception as exc:
                    for instance_id in chunk:
                        if not waiting[instance_id].done():
                            waiting[instance_id].set_exception(exc)
                    continue
                for instance_id in chunk:
                    details = found.get(instance_id)
                    if details is not None:
                        self._known[instance_id] = details
                    if not waiting[instance_id].done():
                        waiting[instance_id].set_result(details)

    async def _describe(self, ids: list[str]) -> dict[str, Ec2Instance]:
        found: dict[str, Ec2Instance] = {}
        token: str | None = None
        while True:
            params: dict[str, Any] = {"Filters": [{"Name": "instance-id", "Values": ids}]}
            if token:
                params["NextToken"] = token
            self.calls += 1
            page = await self.api.call("ec2", "DescribeInstances", **params)
            for reservation in page.get("Reservations") or []:
                for inst in reservation.get("Instances") or []:
                    instance_id = str(inst["InstanceId"])
                    found[instance_id] = Ec2Instance(
                        instance_id=instance_id,
                        launched_at=inst.get("LaunchTime"),
                        private_ip=inst.get("PrivateIpAddress"),
                        private_dns=inst.get("PrivateDnsName"),
                        tags={t["Key"]: t["Value"] for t in inst.get("Tags") or []},
                        public_ip=inst.get("PublicIpAddress"),
                        public_dns=inst.get("PublicDnsName"),
                    )
            token = page.get("NextToken")
            if not token:
                return found
