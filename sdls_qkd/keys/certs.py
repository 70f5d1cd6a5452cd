"""A throw-away PKI for KME simulators and tests: one CA, KME server certs, SAE client certs.

ETSI GS QKD 014 mandates HTTPS with mutual authentication: the SAE checks the KME's server
certificate, the KME learns the SAE ID from the SAE's client certificate.  This module makes
such certificates with ``cryptography`` (EC P-256, SHA-256):

* the CA: ``basicConstraints CA:TRUE, pathlen 0``, ``keyCertSign``/``cRLSign``;
* a KME: subject CN = KME ID, SAN = the host names and IP addresses it is reached at,
  ``digitalSignature``, EKU ``serverAuth``;
* an SAE: subject CN = SAE ID, ``digitalSignature``, EKU ``clientAuth``.

Private keys are written with mode 0600.  This PKI is for tests and demonstrations: a real
deployment uses its operator's PKI.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sdls_qkd.errors import InvalidConfiguration, UsageError

__all__ = [
    "Authority",
    "IssuedCert",
    "CertFiles",
    "LocalPki",
    "create_local_pki",
    "DEFAULT_KME_IDS",
    "DEFAULT_SAE_IDS",
    "DEFAULT_HOSTS",
]

DEFAULT_KME_IDS = ("KME_A", "KME_B")
#: SAE_A is served by KME_A; SAE_B and SAE_C by KME_B (SAE_C lets tests show 401 for a slave
#: asking for keys addressed to another SAE).
DEFAULT_SAE_IDS = ("SAE_A", "SAE_B", "SAE_C")
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
MANIFEST = "pki.json"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _san_entries(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


@dataclass(frozen=True)
class IssuedCert:
    """A certificate and its private key, PEM-encoded, in memory."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)

    def write(self, cert_file: Path, key_file: Path) -> CertFiles:
        """Write both PEM files (the key with mode 0600)."""
        cert_file.write_bytes(self.cert_pem)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.key_pem)
        return CertFiles(cert_file, key_file)


@dataclass(frozen=True)
class CertFiles:
    """Paths of a PEM certificate and its PEM private key."""

    cert_file: Path
    key_file: Path


class Authority:
    """An in-memory certificate authority that issues KME and SAE certificates."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.cert = cert
        self._key = key

    def __repr__(self) -> str:
        return f"Authority({self.cert.subject.rfc4514_string()!r})"

    @classmethod
    def create(cls, name: str = "sdls-qkd test CA", *, valid_days: int = 365) -> Authority:
        """A new self-signed CA with an EC P-256 key."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
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
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_file: str | os.PathLike[str], key_file: str | os.PathLike[str]) -> Authority:
        """The CA of a PKI written by :func:`create_local_pki` (``ca.crt``, ``ca.key``)."""
        try:
            cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
            key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise InvalidConfiguration(f"cannot load the CA from {cert_file}: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise InvalidConfiguration(f"{key_file} is not an EC private key")
        return cls(cert, key)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        """The CA's private key (PEM, unencrypted): only for writing the test PKI to disk."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def issue(
        self,
        common_name: str | None,
        *,
        server_hosts: Iterable[str] = (),
        san_names: Iterable[str] = (),
        server: bool = False,
        client: bool = False,
        valid_days: int = 365,
    ) -> IssuedCert:
        """Issue an end-entity certificate.

        ``server_hosts`` become SAN DNS/IP entries (what a client checks the host name
        against); ``san_names`` are extra SAN DNS names (an identity without a CN).  ``server``
        and ``client`` select the extended key usages.
        """
        if not (server or client):
            raise UsageError("a certificate needs server or client usage (or both)")
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
        now = _now()
        ekus = []
        if server:
            ekus.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            ekus.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        sans = _san_entries(server_hosts) + [x509.DNSName(n) for n in san_names]
        if sans:
            # RFC 5280: SAN is critical when the subject is empty
            builder = builder.add_extension(
                x509.SubjectAlternativeName(sans), critical=not attrs
            )
        cert = builder.sign(self._key, hashes.SHA256())
        return IssuedCert(
            cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )


@dataclass(frozen=True)
class LocalPki:
    """A PKI written to a directory: the CA file and the KME and SAE cert/key files by ID."""

    directory: Path
    ca_file: Path
    kmes: Mapping[str, CertFiles]
    saes: Mapping[str, CertFiles]
    hosts: tuple[str, ...]

    def kme(self, kme_id: str) -> CertFiles:
        try:
            return self.kmes[kme_id]
        except KeyError:
            raise InvalidConfiguration(
                f"no certificate for KME {kme_id!r} in {self.directory} "
                f"(has {sorted(self.kmes)})"
            ) from None

    def sae(self, sae_id: str) -> CertFiles:
        try:
            return self.saes[sae_id]
        except KeyError:
            raise InvalidConfiguration(
                f"no certificate for SAE {sae_id!r} in {self.directory} "
                f"(has {sorted(self.saes)})"
            ) from None

    def authority(self) -> Authority:
        """The CA, to issue more certificates (its key is ``ca.key`` next to ``ca.crt``)."""
        return Authority.load(self.ca_file, self.ca_file.with_name("ca.key"))

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> LocalPki:
        """Read the manifest written by :func:`create_local_pki`."""
        base = Path(directory)
        manifest = base / MANIFEST
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            kmes = {k: CertFiles(base / v["cert"], base / v["key"]) for k, v in data["kmes"].items()}
            saes = {k: CertFiles(base / v["cert"], base / v["key"]) for k, v in data["saes"].items()}
            return cls(base, base / data["ca"], kmes, saes, tuple(data["hosts"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidConfiguration(
                f"{manifest} is not a PKI manifest written by 'sdls-qkd kme certs': {exc}"
            ) from None


def _check_id(kind: str, ident: str) -> None:
    if not ident or not all(c.isalnum() or c in "-_." for c in ident):
        raise UsageError(f"{kind} ID {ident!r} must be non-empty letters, digits, '-', '_' or '.'")


def create_local_pki(
    directory: str | os.PathLike[str],
    *,
    kme_ids: Iterable[str] = DEFAULT_KME_IDS,
    sae_ids: Iterable[str] = DEFAULT_SAE_IDS,
    hosts: Iterable[str] = DEFAULT_HOSTS,
    valid_days: int = 30,
    overwrite: bool = False,
) -> LocalPki:
    """Create a CA and one certificate per KME and SAE in ``directory``; write a manifest.

    Files: ``ca.crt``, ``ca.key``, ``<ID>.crt``/``<ID>.key`` for each KME and SAE, and
    ``pki.json`` listing them.  Refuses to overwrite an existing PKI unless ``overwrite``.
    """
    base = Path(directory)
    base.mkdir(parents=True, exist_ok=True)
    if (base / MANIFEST).exists() and not overwrite:
        raise UsageError(f"{base} already holds a PKI ({MANIFEST}); pass overwrite=True")
    kme_list, sae_list, host_list = list(kme_ids), list(sae_ids), list(hosts)
    for k in kme_list:
        _check_id("KME", k)
    for s in sae_list:
        _check_id("SAE", s)
    if len(set(kme_list + sae_list)) != len(kme_list) + len(sae_list):
        raise UsageError("KME and SAE IDs must all be distinct")
    if not host_list:
        raise UsageError("at least one host name or IP address is needed for the KME certs")
    ca = Authority.create(valid_days=valid_days)
    IssuedCert(ca.cert_pem, ca.key_pem()).write(base / "ca.crt", base / "ca.key")
    kmes = {
        k: ca.issue(k, server_hosts=host_list, server=True, valid_days=valid_days).write(
            base / f"{k}.crt", base / f"{k}.key"
        )
        for k in kme_list
    }
    saes = {
        s: ca.issue(s, client=True, valid_days=valid_days).write(
            base / f"{s}.crt", base / f"{s}.key"
        )
        for s in sae_list
    }
    manifest = {
        "ca": "ca.crt",
        "hosts": host_list,
        "kmes": {k: {"cert": f"{k}.crt", "key": f"{k}.key"} for k in kme_list},
        "saes": {s: {"cert": f"{s}.crt", "key": f"{s}.key"} for s in sae_list},
    }
    (base / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return LocalPki(base, base / "ca.crt", kmes, saes, tuple(host_list))
