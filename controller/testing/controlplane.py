"""The local control plane: a real etcd and a real kube-apiserver on loopback ports.

Lifecycle (an async context manager)::

    async with ControlPlane() as cp:      # etcd, then kube-apiserver, then our CRDs
        async with cp.api_client() as api:
            ...
    # both processes stopped, the work directory removed

Invariants:

- Everything lives in one temporary work directory (certificates, etcd data, logs,
  kubeconfig) that is removed on exit unless ``keep_workdir`` is set.
- On exit, normal or not (an exception, a cancelled test), both processes are stopped and
  waited for; the children also die with this process (see :mod:`controller.testing.process`).
- The API server serves TLS with its own CA, authenticates the admin by client certificate
  (``system:masters``), authorizes with RBAC, and signs ServiceAccount tokens, so
  TokenRequest and least-privilege tests behave as on a real cluster.
- :attr:`kubeconfig_path` embeds all credentials, so it works for kubectl and for the
  ``<cluster>-kubeconfig`` Secret a workload cluster is reached through.

Failure: any start-up problem (missing binaries, a port in use, a process that exits or
never becomes ready) raises :class:`ControlPlaneError` with one line naming the cause; what
was already started is stopped first. Nothing waits forever: every wait has a deadline.

Fault injection for tests goes through :meth:`kill_apiserver`, :meth:`start_apiserver`,
:meth:`restart_apiserver` and :meth:`compact_etcd`: real processes, killed or compacted.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import shutil
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import yaml
from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry

from controller.runtime.kube import ApiError, KubeClient, Resource, RestMetrics
from controller.testing.assets import Assets, find_assets
from controller.testing.certs import Pki
from controller.testing.errors import ControlPlaneError
from controller.testing.ports import LOOPBACK, ensure_free, free_port
from controller.testing.process import Process
from controller.testing.waiting import until

__all__ = ["ControlPlane", "ControlPlaneError"]

_POLL = 0.1
CRDS = Resource(
    group="apiextensions.k8s.io",
    version="v1",
    plural="customresourcedefinitions",
    kind="CustomResourceDefinition",
    namespaced=False,
)


class ControlPlane:
    """A real etcd + kube-apiserver for tests; see the module docstring."""

    def __init__(
        self,
        *,
        assets: Assets | None = None,
        crds: Sequence[Mapping[str, Any]] | None = None,
        install_crds: bool = True,
        etcd_port: int | None = None,
        apiserver_port: int | None = None,
        start_timeout: float = 60.0,
        keep_workdir: bool = False,
        apiserver_args: Sequence[str] = (),
    ) -> None:
        self._assets = assets
        self._crds = list(crds) if crds is not None else None
        self._install_crds = install_crds
        self._etcd_port_wanted = etcd_port
        self._apiserver_port_wanted = apiserver_port
        self._start_timeout = start_timeout
        self._keep_workdir = keep_workdir
        self._extra_apiserver_args = list(apiserver_args)
        self._workdir: Path | None = None
        self._etcd: Process | None = None
        self._apiserver: Process | None = None
        self._pki_paths: dict[str, str] = {}
        self.etcd_port = 0
        self.apiserver_port = 0
        #: Seconds from entering the context to CRDs served (for reports and benchmarks).
        self.start_seconds = 0.0

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        began = time.monotonic()
        try:
            await self._start()
        except BaseException:
            await self._stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _start(self) -> None:
        assets = self._assets or find_assets()
        self._assets = assets
        if self._etcd_port_wanted is not None:
            ensure_free(port=self._etcd_port_wanted, purpose="etcd")
        if self._apiserver_port_wanted is not None:
            ensure_free(port=self._apiserver_port_wanted, purpose="kube-apiserver")
        self._workdir = Path(tempfile.mkdtemp(prefix="mpc-controlplane-"))
        pki_dir = self._workdir / "pki"
        pki_dir.mkdir()
        pki = Pki.generate()
        self._pki = pki
        self._pki_paths = {name: str(path) for name, path in pki.write(pki_dir).items()}
        self.etcd_port = self._etcd_port_wanted or free_port()
        self.apiserver_port = self._apiserver_port_wanted or free_port()
        deadline = time.monotonic() + self._start_timeout
        await self._start_etcd(deadline=deadline)
        await self.start_apiserver(deadline=deadline)
        self._write_kubeconfig()
        if self._install_crds:
            await self._apply_crds(deadline=deadline)

    async def _stop(self) -> None:
        procs = [p for p in (self._apiserver, self._etcd) if p is not None]
        try:
            for proc in procs:
                await proc.stop()
        finally:
            for proc in procs:
                proc.kill()
            self._apiserver = self._etcd = None
            if self._workdir is not None and not self._keep_workdir:
                shutil.rmtree(self._workdir, ignore_errors=True)

    # ------------------------------------------------------------------- etcd

    @property
    def etcd_url(self) -> str:
        return f"http://{LOOPBACK}:{self.etcd_port}"

    async def _start_etcd(self, *, deadline: float) -> None:
        assert self._assets is not None
        assert self._workdir is not None
        peer_port = free_port()
        peer_url = f"http://{LOOPBACK}:{peer_port}"
        argv = [
            str(self._assets.etcd),
            "--name=default",
            f"--data-dir={self._workdir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]
        self._etcd = await Process.start(
            name="etcd", argv=argv, log_path=self._workdir / "etcd.log"
        )
        await self._wait_ready(
            proc=self._etcd, url=f"{self.etcd_url}/health", port=self.etcd_port, deadline=deadline
        )

    async def compact_etcd(self) -> int:
        """Compact etcd's history up to its current revision; returns that revision.

        A watch resumed from an older resourceVersion then gets ``410 Gone`` once the API
        server's watch cache no longer holds it (after :meth:`restart_apiserver`).
        """
        async with aiohttp.ClientSession() as session:
            key = base64.b64encode(b"/").decode()
            async with session.post(
                f"{self.etcd_url}/v3/kv/range", json={"key": key, "count_only": True}
            ) as resp:
                resp.raise_for_status()
                revision = int((await resp.json())["header"]["revision"])
            async with session.post(
                f"{self.etcd_url}/v3/kv/compaction", json={"revision": revision, "physical": True}
            ) as resp:
                resp.raise_for_status()
        return revision

    # ---------------------------------------------------------- kube-apiserver

    @property
    def server(self) -> str:
        """The API server's URL."""
        return f"https://{LOOPBACK}:{self.apiserver_port}"

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise ControlPlaneError("the control plane is not running")
        return self._workdir

    async def start_apiserver(self, *, deadline: float | None = None) -> None:
        """Start kube-apiserver (again) on the same port, certificates and etcd."""
        assert self._assets is not None
        assert self._workdir is not None
        if self._apiserver is not None and self._apiserver.running():
            return
        if deadline is None:
            deadline = time.monotonic() + self._start_timeout
        pki = self._pki_paths
        argv = [
            str(self._assets.kube_apiserver),
            f"--etcd-servers={self.etcd_url}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={self._workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki['apiserver.crt']}",
            f"--tls-private-key-file={pki['apiserver.key']}",
            f"--client-ca-file={pki['ca.crt']}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={self.server}/",
            f"--service-account-key-file={pki['sa.pub']}",
            f"--service-account-signing-key-file={pki['sa.key']}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--disable-admission-plugins=ServiceAccount",
            "--profiling=false",
            *self._extra_apiserver_args,
        ]
        self._apiserver = await Process.start(
            name="kube-apiserver", argv=argv, log_path=self._workdir / "kube-apiserver.log"
        )
        await self._wait_ready(
            proc=self._apiserver,
            url=f"{self.server}/readyz",
            port=self.apiserver_port,
            deadline=deadline,
        )

    async def kill_apiserver(self) -> None:
        """SIGKILL kube-apiserver and reap it (etcd keeps running); see :meth:`start_apiserver`."""
        if self._apiserver is not None:
            self._apiserver.kill()
            await self._apiserver.wait()

    async def stop_apiserver(self) -> None:
        if self._apiserver is not None:
            await self._apiserver.stop()

    async def restart_apiserver(self) -> None:
        await self.stop_apiserver()
        await self.start_apiserver()

    async def kill_etcd(self) -> None:
        """SIGKILL etcd and reap it (for fault-injection tests)."""
        if self._etcd is not None:
            self._etcd.kill()
            await self._etcd.wait()

    # --------------------------------------------------------------- readiness

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self._pki_paths["ca.crt"])
        ctx.load_cert_chain(self._pki_paths["admin.crt"], self._pki_paths["admin.key"])
        return ctx

    async def _wait_ready(self, *, proc: Process, url: str, port: int, deadline: float) -> None:
        ssl_ctx: ssl.SSLContext | bool = self._ssl_context() if url.startswith("https") else False
        last = ""
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                if not proc.running():
                    await proc.wait()
                    line = proc.last_log_line()
                    if "address already in use" in line:
                        raise ControlPlaneError(
                            f"{proc.name} could not listen: port {port} on {LOOPBACK} "
                            "is already in use"
                        )
                    raise ControlPlaneError(
                        f"{proc.name} exited with code {proc.returncode} during start-up: "
                        f"{line or 'no output'} (log: {proc.log_path})"
                    )
                try:
                    async with session.get(url, ssl=ssl_ctx) as resp:
                        if resp.status == 200:
                            return
                        last = f"{url} answered {resp.status}"
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    last = f"{url}: {exc.__class__.__name__}"
                if time.monotonic() > deadline:
                    raise ControlPlaneError(
                        f"{proc.name} did not become ready within {self._start_timeout:.0f}s "
                        f"({last}; last log line: {proc.last_log_line() or 'none'})"
                    )
                await asyncio.sleep(_POLL)

    # ---------------------------------------------------------------- clients

    @property
    def kubeconfig_path(self) -> Path:
        return self.workdir / "kubeconfig"

    def kubeconfig(self, *, context: str = "local") -> dict[str, Any]:
        """A kubeconfig for the admin user with every credential embedded."""

        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        pki = self._pki
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": context,
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": b64(pki.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": f"{context}-admin",
                    "user": {
                        "client-certificate-data": b64(pki.admin_cert),
                        "client-key-data": b64(pki.admin_key),
                    },
                }
            ],
            "contexts": [
                {"name": context, "context": {"cluster": context, "user": f"{context}-admin"}}
            ],
            "current-context": context,
        }

    def _write_kubeconfig(self) -> None:
        path = self.kubeconfig_path
        path.write_text(yaml.safe_dump(self.kubeconfig(), sort_keys=False))
        path.chmod(0o600)

    def client_configuration(self, *, token: str | None = None) -> client.Configuration:
        """A kubernetes_asyncio configuration: admin by client certificate, or ``token``."""
        cfg = client.Configuration()
        cfg.host = self.server
        cfg.ssl_ca_cert = self._pki_paths["ca.crt"]
        if token is None:
            cfg.cert_file = self._pki_paths["admin.crt"]
            cfg.key_file = self._pki_paths["admin.key"]
        else:
            cfg.api_key = {"BearerToken": token}
            cfg.api_key_prefix = {"BearerToken": "Bearer"}
        return cfg

    @contextlib.asynccontextmanager
    async def api_client(self, *, token: str | None = None) -> AsyncIterator[client.ApiClient]:
        """An API client for this control plane, closed when the block exits."""
        async with client.ApiClient(configuration=self.client_configuration(token=token)) as api:
            yield api

    # ------------------------------------------------------------------- CRDs

    def _crd_documents(self) -> list[Mapping[str, Any]]:
        if self._crds is not None:
            return self._crds
        from controller.api.crdgen import generate_crds

        return list(generate_crds())

    async def _apply_crds(self, *, deadline: float) -> None:
        crds = self._crd_documents()
        if not crds:
            return
        async with self.api_client() as api:
            kube = KubeClient(api=api, metrics=RestMetrics(registry=CollectorRegistry()))
            await apply_crds(kube=kube, crds=crds, deadline=deadline)


async def apply_crds(
    *, kube: KubeClient, crds: Sequence[Mapping[str, Any]], deadline: float
) -> None:
    """Create or update ``crds`` and wait until each is Established and served by discovery.

    Raises :class:`ControlPlaneError` when a CRD is rejected or not served by ``deadline``.
    """
    for crd in crds:
        name = crd["metadata"]["name"]
        try:
            await kube.create(CRDS, body=dict(crd))
        except ApiError as exc:
            if not exc.conflict:
                raise ControlPlaneError(
                    f"CRD {name} was rejected by the API server: {exc.message}"
                ) from exc
            current = await kube.get(CRDS, name=name)
            body = {
                **crd,
                "metadata": {
                    **crd["metadata"],
                    "resourceVersion": current["metadata"]["resourceVersion"],
                },
            }
            await kube.request(method="PUT", path=CRDS.path(name=name), body=body)
    for crd in crds:
        await _wait_served(kube=kube, crd=crd, deadline=deadline)


async def _wait_served(*, kube: KubeClient, crd: Mapping[str, Any], deadline: float) -> None:
    name = crd["metadata"]["name"]
    group = crd["spec"]["group"]
    plural = crd["spec"]["names"]["plural"]
    versions = [v["name"] for v in crd["spec"]["versions"] if v.get("served", True)]

    async def served() -> bool:
        current = await kube.get(CRDS, name=name)
        # A CRD just created may carry ``status.conditions: null`` until it is processed.
        conditions = (current.get("status") or {}).get("conditions") or []
        if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return False
        for version in versions:
            try:
                found = await kube.request(method="GET", path=f"/apis/{group}/{version}")
            except ApiError:
                return False
            if not any(r.get("name") == plural for r in found.get("resources", [])):
                return False
        return True

    try:
        await until(served, timeout=max(deadline - time.monotonic(), 0.1), what=f"CRD {name}")
    except TimeoutError:
        raise ControlPlaneError(f"CRD {name} was not served before the start-up deadline") from None
