"""A throw-away certificate authority for the local control plane.

One CA signs the API server's serving certificate (SANs ``localhost`` and ``127.0.0.1``) and
the admin client certificate (``CN=admin, O=system:masters``); a separate key pair signs
ServiceAccount tokens so TokenRequest works. Keys are ECDSA P-256: fast to make and accepted
by kube-apiserver for all three uses. Nothing here touches the network or the disk except
:meth:`Pki.write`, which writes PEM files into a directory the caller owns.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=7)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True, slots=True)
class Pki:
    """PEM material for one control plane."""

    ca_cert: bytes
    serving_cert: bytes
    serving_key: bytes
    admin_cert: bytes
    admin_key: bytes
    sa_public_key: bytes
    sa_private_key: bytes

    @classmethod
    def generate(cls) -> Pki:
        now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
        ca_key = _key()
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "machinepool-controller-ca")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )

        def leaf(
            *, subject: x509.Name, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]
        ) -> tuple[bytes, bytes]:
            key = _key()
            builder = (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(ca_name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now)
                .not_valid_after(now + _VALIDITY)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            )
            if sans:
                builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            return _cert_pem(builder.sign(ca_key, hashes.SHA256())), _key_pem(key)

        serving_cert, serving_key = leaf(
            subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            sans=[
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ],
        )
        admin_cert, admin_key = leaf(
            subject=x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "admin"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                ]
            ),
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
            sans=[],
        )
        sa_key = _key()
        return cls(
            ca_cert=_cert_pem(ca),
            serving_cert=serving_cert,
            serving_key=serving_key,
            admin_cert=admin_cert,
            admin_key=admin_key,
            sa_public_key=sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            sa_private_key=_key_pem(sa_key),
        )

    def write(self, directory: Path) -> dict[str, Path]:
        """Write every PEM into ``directory``; returns the paths by name."""
        files = {
            "ca.crt": self.ca_cert,
            "apiserver.crt": self.serving_cert,
            "apiserver.key": self.serving_key,
            "admin.crt": self.admin_cert,
            "admin.key": self.admin_key,
            "sa.pub": self.sa_public_key,
            "sa.key": self.sa_private_key,
        }
        paths = {}
        for name, data in files.items():
            path = directory / name
            path.write_bytes(data)
            path.chmod(0o600)
            paths[name] = path
        return paths
