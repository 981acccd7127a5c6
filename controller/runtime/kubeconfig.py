"""A restricted, in-memory kubeconfig loader for workload clusters: a kubeconfig is data.

A workload cluster's kubeconfig comes from a Secret a tenant can write, so it is untrusted
input. The full kubeconfig loader would run ``exec`` plugins (a process inheriting the
controller's environment and cloud credentials), read ``tokenFile`` and certificate *paths*
from the controller's own disk (its ServiceAccount token, sent to a server the tenant chose),
and honour ``auth-provider`` and ``proxy-url``. Here only this is used, from the
``current-context``:

- ``clusters[].cluster``: ``server`` (an ``https://`` URL), inline
  ``certificate-authority-data``, ``tls-server-name``; ``insecure-skip-tls-verify: true``
  only when the caller allows it (``--allow-insecure-workload-kubeconfigs``);
- ``users[].user``: inline ``client-certificate-data`` + ``client-key-data`` (both or
  neither; an encrypted key is refused, never prompted for), and inline ``token``.

Everything else in those two objects is refused (``extensions`` and ``disable-compression``
are ignored): ``exec``, ``auth-provider``, ``tokenFile``, every path field, ``proxy-url``,
basic auth and impersonation each by name, an unknown field by a generic message.

Invariants: :class:`KubeconfigError` messages are fixed text (they name the refused field,
never a value from the Secret, and chain no exception that could hold one), so they are safe
for conditions, Events and logs; :class:`WorkloadCredentials` does not print its secrets.
Nothing touches the disk except the client certificate chain, which OpenSSL loads only from
a file: it goes to an anonymous in-memory file (``memfd``) where the OS has one, otherwise
to a private 0600 temp file removed in a ``finally`` before :func:`ssl_context` returns.
No process is started, no file is read, no environment variable is consulted except the
HTTP(S) proxy variables the controller's operator set (as client-go honours them too).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client import rest

__all__ = [
    "KUBECONFIG_SECRET_TYPE",
    "KubeconfigError",
    "KubeconfigSecretError",
    "WorkloadCredentials",
    "credentials_from_secret",
    "parse_kubeconfig",
    "ssl_context",
    "workload_api_client",
]

#: The Secret type Cluster API gives the kubeconfig Secrets it writes.
KUBECONFIG_SECRET_TYPE = "cluster.x-k8s.io/secret"

_CLUSTER_FIELDS_USED = frozenset({"server", "certificate-authority-data", "tls-server-name"})
_CLUSTER_FIELDS_IGNORED = frozenset({"extensions", "disable-compression"})
_CLUSTER_FIELDS_REFUSED = {
    "certificate-authority": "clusters[].cluster.certificate-authority (a file path) is not "
    "supported; embed it as certificate-authority-data",
    "proxy-url": "clusters[].cluster.proxy-url is not supported",
}
_INSECURE = "insecure-skip-tls-verify"

_USER_FIELDS_USED = frozenset({"client-certificate-data", "client-key-data", "token"})
_USER_FIELDS_IGNORED = frozenset({"extensions"})
_USER_FIELDS_REFUSED = {
    "exec": "users[].user.exec (a credential plugin) is not supported",
    "auth-provider": "users[].user.auth-provider is not supported",
    "tokenFile": "users[].user.tokenFile (a file path) is not supported; embed it as token",
    "client-certificate": "users[].user.client-certificate (a file path) is not supported; "
    "embed it as client-certificate-data",
    "client-key": "users[].user.client-key (a file path) is not supported; "
    "embed it as client-key-data",
    "username": "users[].user.username/password (basic auth) is not supported",
    "password": "users[].user.username/password (basic auth) is not supported",
    "as": "users[].user.as (impersonation) is not supported",
    "as-uid": "users[].user.as-uid (impersonation) is not supported",
    "as-groups": "users[].user.as-groups (impersonation) is not supported",
    "as-user-extra": "users[].user.as-user-extra (impersonation) is not supported",
}


class KubeconfigError(ValueError):
    """A kubeconfig that is refused (``unsupported``) or cannot be read.

    The message is fixed text: it may name a field, never a value from the Secret."""

    def __init__(self, message: str, *, unsupported: bool = False) -> None:
        super().__init__(message)
        self.unsupported = unsupported


class KubeconfigSecretError(ValueError):
    """The Secret is not a Cluster API kubeconfig Secret (wrong type); fixed text."""


@dataclass(frozen=True, repr=False)
class WorkloadCredentials:
    """What a workload client may use from a kubeconfig: all inline, nothing executable."""

    server: str
    ca_data: bytes | None = None
    client_cert: bytes | None = None
    client_key: bytes | None = None
    token: str | None = None
    tls_server_name: str | None = None
    insecure: bool = False

    def __repr__(self) -> str:  # never print credentials, even in a debugger or traceback
        return "WorkloadCredentials(<redacted>)"


def credentials_from_secret(
    secret: Mapping[str, Any], *, allow_insecure: bool = False
) -> WorkloadCredentials:
    """The credentials in a Cluster API kubeconfig Secret (type and key ``value`` checked).

    Raises :class:`KubeconfigSecretError` for a Secret of another type and
    :class:`KubeconfigError` for a refused or unreadable kubeconfig."""
    if secret.get("type") != KUBECONFIG_SECRET_TYPE:
        raise KubeconfigSecretError(
            f"the Secret's type is not {KUBECONFIG_SECRET_TYPE}, so it is not used as a kubeconfig"
        )
    raw = (secret.get("data") or {}).get("value")
    if not raw or not isinstance(raw, str):
        raise KubeconfigError("the Secret has no 'value' key")
    try:
        document = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise KubeconfigError("the Secret's 'value' is not valid base64") from None
    return parse_kubeconfig(document, allow_insecure=allow_insecure)


def parse_kubeconfig(document: bytes, *, allow_insecure: bool = False) -> WorkloadCredentials:
    """The credentials of the current context of ``document`` (a kubeconfig, YAML or JSON)."""
    config = _load_yaml(document)
    name = config.get("current-context")
    if not name or not isinstance(name, str):
        raise KubeconfigError("current-context is not set")
    context = _named(config, "contexts", name, "context")
    cluster_name = context.get("cluster")
    if not cluster_name or not isinstance(cluster_name, str):
        raise KubeconfigError("the current context names no cluster")
    cluster = _named(config, "clusters", cluster_name, "cluster")
    user_name = context.get("user")
    user: Mapping[str, Any] = {}
    if user_name:
        if not isinstance(user_name, str):
            raise KubeconfigError("contexts[].context.user is not a string")
        user = _named(config, "users", user_name, "user")

    _check_fields(
        cluster,
        section="clusters[].cluster",
        used=_CLUSTER_FIELDS_USED | {_INSECURE},
        ignored=_CLUSTER_FIELDS_IGNORED,
        refused=_CLUSTER_FIELDS_REFUSED,
    )
    skip_verify = cluster.get(_INSECURE, False)
    if not isinstance(skip_verify, bool):
        raise KubeconfigError(f"clusters[].cluster.{_INSECURE} is not a boolean")
    if skip_verify and not allow_insecure:
        raise KubeconfigError(
            f"clusters[].cluster.{_INSECURE} is not allowed "
            "(the controller runs without --allow-insecure-workload-kubeconfigs)",
            unsupported=True,
        )
    _check_fields(
        user,
        section="users[].user",
        used=_USER_FIELDS_USED,
        ignored=_USER_FIELDS_IGNORED,
        refused=_USER_FIELDS_REFUSED,
    )

    server = _string(cluster, "server", section="clusters[].cluster")
    if not server:
        raise KubeconfigError("clusters[].cluster.server is not set")
    try:
        url = urlsplit(server)
        url.port  # noqa: B018 - validates the port
    except ValueError:
        raise KubeconfigError("clusters[].cluster.server is not a URL") from None
    if url.scheme != "https" or not url.hostname or url.username or url.password:
        raise KubeconfigError("clusters[].cluster.server is not an https:// URL without userinfo")

    ca = _pem(cluster, "certificate-authority-data", section="clusters[].cluster")
    cert = _pem(user, "client-certificate-data", section="users[].user")
    key = _pem(user, "client-key-data", section="users[].user")
    if (cert is None) != (key is None):
        raise KubeconfigError(
            "users[].user needs both client-certificate-data and client-key-data, or neither"
        )
    if key is not None and b"ENCRYPTED" in key:
        raise KubeconfigError("users[].user.client-key-data is encrypted", unsupported=True)
    token = _string(user, "token", section="users[].user")
    if token is not None and (not token or not token.isascii() or not token.isprintable()
                              or any(c.isspace() for c in token)):  # fmt: skip
        raise KubeconfigError("users[].user.token is not a bearer token (printable ASCII)")
    return WorkloadCredentials(
        server=server.rstrip("/"),
        ca_data=ca,
        client_cert=cert,
        client_key=key,
        token=token,
        tls_server_name=_string(cluster, "tls-server-name", section="clusters[].cluster") or None,
        insecure=skip_verify,
    )


def ssl_context(credentials: WorkloadCredentials) -> ssl.SSLContext:
    """A client TLS context built from inline data only (never a path from the kubeconfig).

    Raises :class:`KubeconfigError` (fixed text) when a certificate or key is unusable."""
    context = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH)
    if credentials.ca_data is not None:
        # Trust exactly the kubeconfig's CA, as client-go does when one is given.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            context.load_verify_locations(cadata=credentials.ca_data.decode("ascii"))
        except (ssl.SSLError, ValueError, UnicodeDecodeError):
            raise KubeconfigError(
                "clusters[].cluster.certificate-authority-data holds no usable certificate"
            ) from None
    if credentials.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if credentials.client_cert is not None and credentials.client_key is not None:
        chain = credentials.client_cert.rstrip(b"\n") + b"\n" + credentials.client_key
        with _private_file(chain) as path:
            try:
                context.load_cert_chain(path, password=_no_password)
            except (ssl.SSLError, ValueError, OSError, _PasswordRequired):
                raise KubeconfigError(
                    "users[].user.client-certificate-data/client-key-data are not a usable "
                    "certificate and key"
                ) from None
    return context


class _WorkloadRestClient(rest.RESTClientObject):
    """kubernetes_asyncio's REST client, on a connector with a TLS context we built.

    Its own constructor only builds a TLS context from file paths; everything else (the
    request method) is inherited unchanged."""

    def __init__(self, *, configuration: client.Configuration, context: ssl.SSLContext) -> None:
        # Empty means "not set" to the inherited request method.
        self.server_hostname = configuration.tls_server_name or ""
        self.proxy = ""
        self.proxy_headers = {}
        self.pool_manager = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=configuration.connection_pool_maxsize,
                                           ssl=context),
            trust_env=True,  # the operator's HTTP(S)_PROXY, never the kubeconfig's proxy-url
            read_bufsize=2**21,
        )  # fmt: skip


async def workload_api_client(credentials: WorkloadCredentials) -> client.ApiClient:
    """An ``ApiClient`` for a workload cluster, configured from ``credentials`` alone.

    Raises :class:`KubeconfigError` when a certificate or key is unusable. Close the client
    with ``await api.close()``."""
    # Loading certificates is CPU work (and a memfd write): keep it off the event loop.
    context = await asyncio.to_thread(ssl_context, credentials)
    cfg = client.Configuration()
    cfg.host = credentials.server
    cfg.tls_server_name = credentials.tls_server_name
    cfg.verify_ssl = not credentials.insecure
    if credentials.token is not None:
        cfg.api_key = {"BearerToken": credentials.token}
        cfg.api_key_prefix = {"BearerToken": "Bearer"}
    api = client.ApiClient(configuration=cfg)
    # ApiClient always builds its REST client from paths in the configuration (here none,
    # so it holds no connection); swap in one on our TLS context.
    default, api.rest_client = (
        api.rest_client,
        _WorkloadRestClient(configuration=cfg, context=context),
    )
    try:
        await default.close()
    except BaseException:
        await api.close()
        raise
    return api


# --------------------------------------------------------------------- internals


class _PasswordRequired(Exception):
    pass


def _no_password() -> bytes:
    raise _PasswordRequired  # an encrypted key: refuse, never prompt on the terminal


@contextlib.contextmanager
def _private_file(data: bytes) -> Iterator[str]:
    """A path holding ``data`` only while the block runs: a memfd, else a 0600 temp file."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:
        fd = memfd_create("workload-client-cert", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    fd, path = tempfile.mkstemp(prefix="workload-", suffix=".pem")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _load_yaml(document: bytes) -> Mapping[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        config = yaml.load(document, Loader=loader)  # a safe loader
    except yaml.YAMLError:
        # YAML errors quote the offending text: never pass them on.
        raise KubeconfigError("the kubeconfig is not valid YAML") from None
    if not isinstance(config, dict):
        raise KubeconfigError("the kubeconfig is not a YAML mapping")
    return config


def _named(config: Mapping[str, Any], list_key: str, name: str, item_key: str) -> Mapping[str, Any]:
    entries = config.get(list_key) or []
    if not isinstance(entries, list):
        raise KubeconfigError(f"{list_key} is not a list")
    for entry in entries:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(item_key) or {}
            if not isinstance(body, dict):
                raise KubeconfigError(f"{list_key}[].{item_key} is not a mapping")
            return body
    raise KubeconfigError(f"{list_key}[] has no entry named by the current context")


def _check_fields(
    body: Mapping[str, Any],
    *,
    section: str,
    used: frozenset[str],
    ignored: frozenset[str],
    refused: Mapping[str, str],
) -> None:
    for field in sorted(str(k) for k in body):
        if field in used or field in ignored:
            continue
        if field in refused:
            raise KubeconfigError(refused[field], unsupported=True)
        # The name itself came from the Secret: do not echo it.
        raise KubeconfigError(f"{section} has a field that is not supported", unsupported=True)


def _string(body: Mapping[str, Any], field: str, *, section: str) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise KubeconfigError(f"{section}.{field} is not a string")
    return value


def _pem(body: Mapping[str, Any], field: str, *, section: str) -> bytes | None:
    value = _string(body, field, section=section)
    if not value:
        return None
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KubeconfigError(f"{section}.{field} is not valid base64") from None
    if b"-----BEGIN " not in data:
        raise KubeconfigError(f"{section}.{field} is not PEM")
    return data
