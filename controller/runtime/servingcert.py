"""The TLS certificate the secure metrics listener serves.

Two sources, as controller-runtime's metrics server:

- ``--metrics-cert-path DIR``: ``DIR/tls.crt`` and ``DIR/tls.key`` (PEM; a cert-manager
  Certificate's Secret mounted as a volume has this layout). :meth:`ServingCertificate.reload`
  loads them again when either file changed, so a rotated certificate is served without a
  restart (the manager calls it every few seconds); a pair that no longer loads keeps the
  previous one and logs a warning.
- no directory: a self-signed ECDSA P-256 certificate made in memory at start (valid for a
  year, SANs ``localhost``, ``127.0.0.1`` and the pod's host name). Scrapers then skip
  verification (the chart's ServiceMonitor sets ``insecureSkipVerify`` unless a CA is given);
  the bearer token still authenticates the scraper, TLS keeps it secret on the wire.

Invariants: the private key never stays on disk. :mod:`ssl` loads keys only from files, so
the self-signed pair is written to a private (0700) temporary directory, loaded and deleted
before :func:`self_signed` returns, whatever happens. Errors name the files, never their
content.

Failure: :class:`CertificateError` (a missing or unloadable pair) with one line naming the
directory; the CLI reports it at start.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import tempfile
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CERT_FILE", "KEY_FILE", "CertificateError", "ServingCertificate", "self_signed"]

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
_VALIDITY = datetime.timedelta(days=365)

_log = structlog.get_logger(__name__)


class CertificateError(RuntimeError):
    """The serving certificate cannot be made or loaded."""


def _server_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def self_signed_pem(*, hosts: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
    """A fresh self-signed serving certificate and its key, PEM, for ``localhost``,
    ``127.0.0.1`` and ``hosts``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "machinepool-controller-metrics")])
    dns = [x509.DNSName(h) for h in dict.fromkeys(("localhost", *hosts)) if h]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName([*dns, x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def self_signed() -> ssl.SSLContext:
    """A server context with a self-signed certificate made now; see the module docstring."""
    cert_pem, key_pem = self_signed_pem(hosts=(socket.gethostname(),))
    ctx = _server_context()
    with tempfile.TemporaryDirectory(prefix="mpc-metrics-cert-") as scratch:
        os.chmod(scratch, 0o700)
        cert_path, key_path = Path(scratch, CERT_FILE), Path(scratch, KEY_FILE)
        cert_path.write_bytes(cert_pem)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key_pem)
        ctx.load_cert_chain(cert_path, key_path)
    return ctx


class ServingCertificate:
    """A server context serving ``directory``'s ``tls.crt``/``tls.key``, reloadable."""

    def __init__(self, *, directory: Path) -> None:
        self.directory = directory
        self.context = _server_context()
        self._stamp: tuple[float, float, int, int] | None = None
        stamp = self._files_stamp()
        if stamp is None:
            raise CertificateError(
                f"--metrics-cert-path {directory}: needs {CERT_FILE} and {KEY_FILE}"
            )
        self._load(stamp)

    def _files_stamp(self) -> tuple[float, float, int, int] | None:
        try:
            cert = (self.directory / CERT_FILE).stat()
            key = (self.directory / KEY_FILE).stat()
        except OSError:
            return None
        return (cert.st_mtime, key.st_mtime, cert.st_ino, key.st_ino)

    def _load(self, stamp: tuple[float, float, int, int]) -> None:
        self._stamp = stamp  # a bad pair is reported once, not at every reload
        cert, key = self.directory / CERT_FILE, self.directory / KEY_FILE
        try:
            # A scratch context first: a failed load can leave a context half-replaced
            # (the new certificate with the old key), and this one is serving.
            _server_context().load_cert_chain(cert, key)
            self.context.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise CertificateError(
                f"--metrics-cert-path {self.directory}: cannot load {CERT_FILE}/{KEY_FILE} "
                f"({exc.__class__.__name__})"
            ) from None

    def reload(self) -> bool:
        """Load the pair again if either file changed; True when a new pair is served."""
        stamp = self._files_stamp()
        if stamp is None or stamp == self._stamp:
            return False
        try:
            self._load(stamp)
        except CertificateError as exc:
            _log.warning("metrics certificate not reloaded, serving the previous one",
                         error=str(exc))  # fmt: skip
            return False
        _log.info("metrics certificate reloaded", directory=str(self.directory))
        return True
