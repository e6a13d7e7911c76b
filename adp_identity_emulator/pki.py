"""Key material the emulator generates for each run: a CA, the loopback server certificate, client certificates
and token-signing keys.

Nothing here is stored in the seed or reused between runs: a fresh CA per run means a client can only trust the
emulator it was started with (its ``ca.pem``), and nothing secret ever lands in the repository. The CA and the
server certificate use EC P-256 (fast to make); client certificates and signing keys are RSA-2048 because
azure-identity's ``CertificateCredential`` only accepts RSA keys and Entra ID signs tokens with RS256.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=365)
_BACKDATE = dt.timedelta(hours=1)  # tolerate small clock differences between client and emulator


def b64url(data: bytes) -> str:
    """Base64url without padding, as JOSE headers and JWKs use."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64url(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _window() -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    return now - _BACKDATE, now + _VALIDITY


def _builder(
    common_name: str, issuer: x509.Name, public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    """Every emulator certificate starts here: subject, issuer, key, a random serial, the shared validity window."""
    not_before, not_after = _window()
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class ServerCertificate:
    """The TLS identity every emulator origin presents: valid for IP 127.0.0.1 and DNS ``localhost``."""

    key_pem: bytes
    cert_pem: bytes  # leaf followed by the CA, so clients get the whole chain


@dataclass(frozen=True)
class ClientCertificate:
    """An app registration's certificate credential (key + certificate, RSA-2048)."""

    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    def pem(self) -> bytes:
        """Private key then certificate: the single-file format ``AZURE_CLIENT_CERTIFICATE_PATH`` takes."""
        return _key_pem(self.private_key) + _cert_pem(self.certificate)


class CertificateAuthority:
    """A throw-away CA: it signs the server certificate and client certificates of one emulator run."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        self._key = key
        self.certificate = certificate

    @classmethod
    def generate(cls, common_name: str = "adp-identity emulator CA") -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            _builder(common_name, _name(common_name), key.public_key())
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
        return cls(key, cert)

    def pem(self) -> bytes:
        """The CA certificate: what ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE`` point at."""
        return _cert_pem(self.certificate)

    def _leaf(
        self,
        public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
        common_name: str,
        usage: x509.ObjectIdentifier,
        san: list[x509.GeneralName] | None = None,
    ) -> x509.Certificate:
        builder = (
            _builder(common_name, self.certificate.subject, public_key)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(self._key, hashes.SHA256())

    def issue_server_certificate(self) -> ServerCertificate:
        key = ec.generate_private_key(ec.SECP256R1())
        san: list[x509.GeneralName] = [
            x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
            x509.DNSName("localhost"),
        ]
        cert = self._leaf(key.public_key(), "127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH, san)
        return ServerCertificate(_key_pem(key), _cert_pem(cert) + self.pem())

    def issue_client_certificate(self, common_name: str, key: rsa.RSAPrivateKey | None = None) -> ClientCertificate:
        key = key or _rsa_key()
        cert = self._leaf(key.public_key(), common_name, ExtendedKeyUsageOID.CLIENT_AUTH)
        return ClientCertificate(key, cert)


class SigningKey:
    """An RSA key that signs JWTs, published as a JWK with a self-signed certificate (``x5c``) as Entra does.

    ``kid`` equals ``x5t`` (base64url SHA-1 of the certificate), which is how Entra ID names its keys.
    """

    def __init__(self, private_key: rsa.RSAPrivateKey, certificate: x509.Certificate) -> None:
        self.private_key = private_key
        self.certificate = certificate
        der = certificate.public_bytes(serialization.Encoding.DER)
        self.x5t = b64url(hashlib.sha1(der).digest())  # noqa: S324 - x5t is SHA-1 by definition
        self.kid = self.x5t
        self._x5c = base64.b64encode(der).decode("ascii")

    @classmethod
    def generate(cls, common_name: str, key: rsa.RSAPrivateKey | None = None) -> SigningKey:
        key = key or _rsa_key()
        cert = _builder(common_name, _name(common_name), key.public_key()).sign(key, hashes.SHA256())
        return cls(key, cert)

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()

    def jwk(self, **extra: str) -> dict[str, Any]:
        numbers = self.public_key.public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.x5t,
            "n": _int_b64url(numbers.n),
            "e": _int_b64url(numbers.e),
            "x5c": [self._x5c],
            **extra,
        }


class KeyMaterial:
    """Where one emulator run takes its CA and its RSA keys (client certificates, token signing keys).

    By default every run makes its own (:meth:`Emulator.start` builds a fresh ``KeyMaterial``). A test session
    shares one with ``reuse=True``: the same CA, and RSA keys made once and handed out again, in the same order, to
    every run - RSA-2048 generation is most of an emulator's start-up time. Within one run the keys are always
    distinct (the Nth key a run asks for is the Nth key made), so a token signed by one key never verifies
    against another role's key.
    """

    def __init__(self, ca: CertificateAuthority | None = None, *, reuse: bool = False) -> None:
        self.ca = ca or CertificateAuthority.generate()
        self.reuse = reuse
        self._keys: list[rsa.RSAPrivateKey] = []
        self._lock = threading.Lock()

    def rsa_keys(self) -> Iterator[rsa.RSAPrivateKey]:
        """The RSA keys of one run: distinct from each other; the same sequence for every run when reused."""
        index = 0
        while True:
            if not self.reuse:
                yield _rsa_key()
                continue
            with self._lock:
                if index == len(self._keys):
                    self._keys.append(_rsa_key())
                key = self._keys[index]
            index += 1
            yield key
