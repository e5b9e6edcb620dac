"""The deployment's own certificate authority, its certificates, and TLS options built from them.

`pcnet init` creates a CA (or an administrator supplies one) and a server certificate signed by
it; nodes (Print Providers, Site Servers) trust exactly that CA and verify the server's name with
service-identity, so neither the system trust store nor any other CA can vouch for a pcnet server.
Certificates and keys are exchanged as PEM bytes so they can come from files, the store or a
test fixture alike.

Keys and certificates reach Twisted as `cryptography` objects, never as pyOpenSSL `X509`/`PKey`
objects: pyOpenSSL 26 deprecates the latter, and this way no warning has to be filtered.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator

from pcnet._files import private_directory, write_durably
from pcnet.errors import ConfigError

#: ALPN names. A server offers both, in this order of preference; a node offers only pcnet/1.
ALPN_PCNET = b"pcnet/1"
ALPN_HTTP = b"http/1.1"
SERVER_ALPN = (ALPN_PCNET, ALPN_HTTP)

#: Default lifetimes. 825 days is the longest server certificate some TLS clients (Apple's)
#: accept even from a private CA.
CA_DAYS = 3650
CERT_DAYS = 825

# Certificates start a little in the past so a peer whose clock runs slow still accepts them.
_BACKDATE = datetime.timedelta(minutes=5)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: fast handshakes, accepted by every TLS client pcnet meets.
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _general_name(name: str) -> x509.GeneralName:
    """An IP address literal becomes an iPAddress SAN, anything else a dNSName (IDNA A-label)."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    if not name.isascii():
        import idna

        name = idna.encode(name, uts46=True).decode("ascii")
    return x509.DNSName(name)


def create_ca(common_name: str, *, days: int = CA_DAYS) -> tuple[bytes, bytes]:
    """A new self-signed CA for one deployment: `(cert_pem, key_pem)`.

    It may sign end-entity certificates only (path length 0): a deployment never needs
    intermediate CAs, and a leaked node key must not be usable to mint a CA.
    """
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return _cert_pem(cert), _key_pem(key)


def issue_certificate(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    names: list[str],
    *,
    client: bool = False,
    days: int = CERT_DAYS,
) -> tuple[bytes, bytes]:
    """A certificate signed by the deployment CA: `(cert_pem, key_pem)`.

    `names` go into subjectAltName, IP literals as iPAddress and the rest as dNSName (that is
    what service-identity checks); the first is also the subject's common name. A server
    certificate (`client=False`) lists every name and address nodes use to reach the server; a
    node's client certificate (`client=True`) carries the node's name.
    """
    if not names:
        raise ValueError("a certificate needs at least one name")
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    key = _new_key()
    now = _now()
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(
            min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc)
        )
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
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _cert_pem(cert), _key_pem(key)


def _load_chain(cert_pem: bytes) -> list[x509.Certificate]:
    chain = x509.load_pem_x509_certificates(cert_pem)
    if not chain:
        raise ValueError("no certificate in PEM data")
    return chain


def server_tls_options(
    cert_pem: bytes,
    key_pem: bytes,
    ca_pem: bytes | None = None,
    *,
    request_client_cert: bool = False,
) -> ssl.CertificateOptions:
    """Server-side TLS options offering ALPN `pcnet/1` then `http/1.1`.

    `cert_pem` may hold the server certificate followed by intermediates (an admin-supplied
    CA); they are sent as the chain. With `request_client_cert`, the server asks for a client
    certificate signed by `ca_pem` but does not require one (browsers have none): the line
    protocol can then read a node's certificate from the transport. TLS 1.2 is the minimum.
    """
    chain = _load_chain(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    extra: dict = {}
    if request_client_cert:
        if ca_pem is None:
            raise ValueError("request_client_cert needs ca_pem to verify client certificates")
        extra = {
            "verify": True,
            "requireCertificate": False,
            # The trust store only takes pyOpenSSL X509 objects (no deprecation there).
            "caCerts": [crypto.X509.from_cryptography(c) for c in _load_chain(ca_pem)],
        }
    return ssl.CertificateOptions(
        # pyOpenSSL accepts cryptography objects here and deprecates its own X509/PKey.
        privateKey=key,
        certificate=chain[0],
        extraCertChain=chain[1:] or None,
        acceptableProtocols=list(SERVER_ALPN),
        **extra,
    )


def client_tls_options(
    hostname: str,
    ca_pem: bytes,
    *,
    client_cert_pem: bytes | None = None,
    client_key_pem: bytes | None = None,
    alpn: tuple[bytes, ...] = (ALPN_PCNET,),
) -> IOpenSSLClientConnectionCreator:
    """Client-side TLS options for a node connecting to a pcnet server.

    The server must present a certificate signed by the deployment CA (`ca_pem`; the system
    trust store is NOT consulted) naming `hostname` (a DNS name, or an IP address literal, which
    must then appear as an iPAddress SAN). ALPN offers only `pcnet/1` unless told otherwise.
    """
    if (client_cert_pem is None) != (client_key_pem is None):
        raise ValueError("give both client_cert_pem and client_key_pem, or neither")
    trust = ssl.trustRootFromCertificates(
        [ssl.Certificate.loadPEM(_cert_pem(c)) for c in _load_chain(ca_pem)]
    )
    extra: dict = {}
    if client_cert_pem is not None:
        chain = _load_chain(client_cert_pem)
        extra = {
            "privateKey": serialization.load_pem_private_key(client_key_pem, password=None),
            "certificate": chain[0],
        }
        if chain[1:]:
            extra["extraCertChain"] = chain[1:]
    return ssl.optionsForClientTLS(
        hostname,
        trustRoot=trust,
        acceptableProtocols=list(alpn),
        extraCertificateOptions=extra,
    )


@dataclass(frozen=True)
class TLSMaterial:
    """What a server needs: the CA certificate (and key, if this deployment mints its own
    certificates) and the server's certificate and key, all PEM."""

    ca_pem: bytes
    ca_key_pem: bytes | None
    cert_pem: bytes
    key_pem: bytes

    def server_options(self, *, request_client_cert: bool = False) -> ssl.CertificateOptions:
        return server_tls_options(
            self.cert_pem, self.key_pem, self.ca_pem, request_client_cert=request_client_cert
        )


class TLSFiles:
    """The TLS files of one server in a directory: `ca.pem`, `ca.key`, `server.pem`, `server.key`.

    Key files are written with mode 0600, atomically (a crash never leaves half a key). `ca.key`
    is optional when loading: an administrator may supply a CA without its key.
    """

    CA_CERT = "ca.pem"
    CA_KEY = "ca.key"
    SERVER_CERT = "server.pem"
    SERVER_KEY = "server.key"

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def path(self, name: str) -> Path:
        return self.directory / name

    def exists(self) -> bool:
        """Whether the CA certificate and the server certificate and key are all present."""
        return all(
            self.path(n).exists() for n in (self.CA_CERT, self.SERVER_CERT, self.SERVER_KEY)
        )

    def load(self) -> TLSMaterial:
        """Read the files; a missing or unreadable file is a `ConfigError` naming it."""

        def read(name: str, required: bool = True) -> bytes | None:
            p = self.path(name)
            try:
                return p.read_bytes()
            except FileNotFoundError:
                if required:
                    raise ConfigError(f"{p}: missing (run `pcnet init` to create it)") from None
                return None
            except OSError as e:
                raise ConfigError(f"{p}: cannot read: {e.strerror}") from None

        material = TLSMaterial(
            ca_pem=read(self.CA_CERT),
            ca_key_pem=read(self.CA_KEY, required=False),
            cert_pem=read(self.SERVER_CERT),
            key_pem=read(self.SERVER_KEY),
        )
        for name, data in (
            (self.CA_CERT, material.ca_pem),
            (self.SERVER_CERT, material.cert_pem),
        ):
            try:
                _load_chain(data)
            except ValueError as e:
                raise ConfigError(f"{self.path(name)}: not a PEM certificate ({e})") from None
        return material

    def store(self, material: TLSMaterial) -> None:
        """Write every file in `material` (keys 0600); `ca_key_pem=None` leaves `ca.key` alone."""
        private_directory(self.directory)
        self._write(self.CA_CERT, material.ca_pem, 0o644)
        if material.ca_key_pem is not None:
            self._write(self.CA_KEY, material.ca_key_pem, 0o600)
        self._write(self.SERVER_CERT, material.cert_pem, 0o644)
        self._write(self.SERVER_KEY, material.key_pem, 0o600)

    def ensure(self, server_names: list[str], *, ca_name: str = "pcnet CA") -> TLSMaterial:
        """Load the files, or create a CA and a server certificate for `server_names` first.

        An existing CA (with its key) is reused when only the server certificate is missing.
        """
        if self.exists():
            return self.load()
        if self.path(self.CA_CERT).exists():
            ca_pem = self.path(self.CA_CERT).read_bytes()
            try:
                ca_key_pem = self.path(self.CA_KEY).read_bytes()
            except FileNotFoundError:
                raise ConfigError(
                    f"{self.path(self.CA_KEY)}: missing; cannot issue {self.SERVER_CERT} "
                    "without the CA key (supply server.pem and server.key yourself)"
                ) from None
        else:
            ca_pem, ca_key_pem = create_ca(ca_name)
        cert_pem, key_pem = issue_certificate(ca_pem, ca_key_pem, server_names)
        material = TLSMaterial(ca_pem, ca_key_pem, cert_pem, key_pem)
        self.store(material)
        return material

    def _write(self, name: str, data: bytes, mode: int) -> None:
        write_durably(self.path(name), data, mode)