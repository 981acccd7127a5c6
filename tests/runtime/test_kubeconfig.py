"""The restricted kubeconfig loader: only inline server/CA/client certificate/token are used,
everything that could run code, read the controller's disk or redirect its traffic is refused
by name, and no error message ever holds a value from the kubeconfig."""

from __future__ import annotations

import base64
import os
import ssl
from typing import Any

import pytest
import yaml

from controller.runtime.kubeconfig import (
    KubeconfigError,
    KubeconfigSecretError,
    credentials_from_secret,
    parse_kubeconfig,
    ssl_context,
)
from controller.testing.certs import Pki

#: A value no message may contain (it stands for any Secret content).
SECRET = "s3cr3t-VALUE-0123456789"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki.generate()


def _kubeconfig(
    pki: Pki, *, cluster: dict[str, Any] | None = None, user: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": "https://127.0.0.1:6443",
                    "certificate-authority-data": _b64(pki.ca_cert),
                    **(cluster or {}),
                },
            }
        ],
        "users": [
            {
                "name": "u",
                "user": {
                    "client-certificate-data": _b64(pki.admin_cert),
                    "client-key-data": _b64(pki.admin_key),
                    **(user or {}),
                },
            }
        ],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
    }


def _parse(config: dict[str, Any], *, allow_insecure: bool = False) -> Any:
    return parse_kubeconfig(yaml.safe_dump(config).encode(), allow_insecure=allow_insecure)


def test_a_cluster_api_kubeconfig_loads_into_a_tls_context(pki: Pki) -> None:
    creds = _parse(_kubeconfig(pki, user={"token": SECRET}))
    assert creds.server == "https://127.0.0.1:6443"
    assert creds.ca_data == pki.ca_cert
    assert (creds.client_cert, creds.client_key, creds.token) == (
        pki.admin_cert,
        pki.admin_key,
        SECRET,
    )
    assert SECRET not in repr(creds)
    context = ssl_context(creds)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


EXEC = {"apiVersion": "client.authentication.k8s.io/v1", "command": "/bin/sh", "args": [SECRET]}


@pytest.mark.parametrize(
    ("section", "field", "value", "named"),
    [
        ("user", "exec", EXEC, "users[].user.exec"),
        ("user", "auth-provider", {"name": "oidc", "config": {"k": SECRET}}, "auth-provider"),
        ("user", "tokenFile", f"/var/run/{SECRET}", "users[].user.tokenFile"),
        ("user", "client-certificate", f"/etc/{SECRET}.crt", "users[].user.client-certificate"),
        ("user", "client-key", f"/etc/{SECRET}.key", "users[].user.client-key"),
        ("user", "username", SECRET, "basic auth"),
        ("user", "password", SECRET, "basic auth"),
        ("user", "as", SECRET, "impersonation"),
        ("user", f"x-{SECRET}", "v", "users[].user has a field that is not supported"),
        ("cluster", "certificate-authority", f"/etc/{SECRET}", "certificate-authority"),
        ("cluster", "proxy-url", f"http://{SECRET}:3128", "clusters[].cluster.proxy-url"),
        ("cluster", "insecure-skip-tls-verify", True, "insecure-skip-tls-verify"),
        ("cluster", f"x-{SECRET}", "v", "clusters[].cluster has a field that is not supported"),
    ],
)
def test_refused_fields_are_named_and_their_values_never_echoed(
    pki: Pki, section: str, field: str, value: object, named: str
) -> None:
    config = _kubeconfig(pki, **{section: {field: value, "token": SECRET}})
    if section == "cluster":
        config["users"][0]["user"]["token"] = SECRET
        del config["clusters"][0]["cluster"]["token"]
    with pytest.raises(KubeconfigError) as caught:
        _parse(config)
    assert caught.value.unsupported
    assert named in str(caught.value)
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None


def test_insecure_skip_tls_verify_only_with_the_flag(pki: Pki) -> None:
    config = _kubeconfig(pki, cluster={"insecure-skip-tls-verify": True})
    del config["clusters"][0]["cluster"]["certificate-authority-data"]
    creds = _parse(config, allow_insecure=True)
    assert creds.insecure
    assert ssl_context(creds).verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (f"users: [{{name: u, user: {{token: {SECRET}, }}".encode(), "not valid YAML"),
        (f"- {SECRET}".encode(), "not a YAML mapping"),
        (f"current-context: {SECRET}\ncontexts: []".encode(), "contexts[] has no entry"),
        (b"\xff\xfe" + SECRET.encode(), "not valid YAML"),
    ],
)
def test_unreadable_kubeconfigs_never_echo_their_content(document: bytes, message: str) -> None:
    with pytest.raises(KubeconfigError) as caught:
        parse_kubeconfig(document)
    assert message in str(caught.value)
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None


def test_a_plain_http_server_and_bad_certificates_are_refused(pki: Pki) -> None:
    with pytest.raises(KubeconfigError, match="https://"):
        _parse(_kubeconfig(pki, cluster={"server": f"http://{SECRET}:80"}))
    with pytest.raises(KubeconfigError, match="certificate-authority-data is not PEM"):
        _parse(_kubeconfig(pki, cluster={"certificate-authority-data": _b64(SECRET.encode())}))
    mismatched = _parse(_kubeconfig(pki, user={"client-key-data": _b64(pki.serving_key)}))
    with pytest.raises(KubeconfigError, match="not a usable certificate and key") as caught:
        ssl_context(mismatched)
    assert caught.value.__cause__ is None


def test_an_encrypted_client_key_is_refused_not_prompted_for(pki: Pki) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pki.admin_key, password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(KubeconfigError, match="encrypted"):
        _parse(_kubeconfig(pki, user={"client-key-data": _b64(encrypted)}))


def test_only_cluster_api_kubeconfig_secrets_are_read(pki: Pki) -> None:
    value = _b64(yaml.safe_dump(_kubeconfig(pki)).encode())
    with pytest.raises(KubeconfigSecretError, match=r"cluster\.x-k8s\.io/secret"):
        credentials_from_secret({"type": "Opaque", "data": {"value": value}})
    creds = credentials_from_secret({"type": "cluster.x-k8s.io/secret", "data": {"value": value}})
    assert creds.client_cert == pki.admin_cert


def test_loading_leaves_no_file_behind(pki: Pki, tmp_path: Any, monkeypatch: Any) -> None:
    """The client certificate chain is loaded from memory (or a file removed at once)."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    fds = len(os.listdir("/proc/self/fd"))
    for i in range(50):
        unique = pki.admin_cert + f"# {i}\n".encode()
        ssl_context(_parse(_kubeconfig(pki, user={"client-certificate-data": _b64(unique)})))
    assert list(tmp_path.iterdir()) == []
    assert len(os.listdir("/proc/self/fd")) <= fds + 1
