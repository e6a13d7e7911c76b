"""A local Entra ID + Dataverse Web API (+ Key Vault) emulator, over real HTTPS on 127.0.0.1.

It lets the whole tool chain - azure-identity credentials, the Dataverse client, the Pulumi provider, the demo -
run unchanged against something that answers like the cloud, with no cloud account and no network::

    from adp_identity_emulator import Emulator, load_seed, DEFAULT_SEED
    with Emulator(load_seed(DEFAULT_SEED), state_dir=tmp_path) as emu:
        env = emu.credential_env("DefraDev")        # AZURE_* variables of the deploying identity
        url = emu.environment_url("defradev-dev")   # a Dataverse environment's origin

Each start generates fresh key material (CA, server certificate, client certificates, secrets, federated
tokens) into the state directory; nothing secret is kept in the seed or between runs. (A test session may hand
every run one :class:`~adp_identity_emulator.pki.KeyMaterial` - one CA, RSA keys made once - with ``keys=``.)

Files are written for their owner only: the state directory must be the user's own with mode 0700 (it is created
so), and every file goes through a temporary file with an unpredictable name, opened ``O_CREAT | O_EXCL |
O_NOFOLLOW`` with mode 0600, then renamed into place - so another local user can neither read the secrets nor
redirect a write through a planted symbolic link.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from adp_identity_emulator.dataverse import DataverseEnvironment, DataverseService
from adp_identity_emulator.dataverse.limits import ServiceProtection, ServiceProtectionLimits
from adp_identity_emulator.entra import FEDERATION_AUDIENCE, EntraService, FederatedCredential
from adp_identity_emulator.faults import FaultInjector
from adp_identity_emulator.http import Service
from adp_identity_emulator.keyvault import KeyVaultService, KeyVaultState
from adp_identity_emulator.log import RequestLog
from adp_identity_emulator.pki import CertificateAuthority, KeyMaterial, SigningKey
from adp_identity_emulator.seed import DEFAULT_SEED, SeedError, load_seed
from adp_identity_emulator.seed_model import ApplicationSeed, Seed, TenantSeed
from adp_identity_emulator.server import HttpsServer, Route, tls_context

__all__ = [
    "DEFAULT_SEED",
    "Emulator",
    "KeyMaterial",
    "SeedError",
    "ServiceProtectionLimits",
    "UnsafeStateDir",
    "load_seed",
]

FEDERATED_ISSUER = "github-actions"
_REMINT_INTERVAL = 3600.0  # federated tokens live 24 h; re-mint hourly so a long-running emulator never serves stale
_KIND_ORDER = ("federated", "secret", "certificate")
_CREDENTIAL_KEY = {"federated": "federated_token_file", "secret": "secret", "certificate": "certificate_path"}
# The Key Vault client sends its vault token to *.vault.azure.net only, or to the loopback origins listed here.
LOOPBACK_VAULTS_ENV = "ADP_IDENTITY_LOOPBACK_VAULTS"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


class UnsafeStateDir(Exception):
    """The state directory is not one only its user can reach (one line: the path, what is wrong, what is allowed)."""

    def __init__(self, path: Path, reason: str) -> None:
        allowed = "allowed: a directory you own with mode 0700, or a path that does not exist yet (created so)"
        self.path = path
        self.reason = f"{reason}; {allowed}"
        super().__init__(f"state directory {path}: {self.reason}")


def _private_folders(folder: Path) -> None:
    """Create ``folder`` and any missing parent with mode 0700 (``mkdir -p`` would give the parents the umask's)."""
    for directory in [*reversed(folder.parents), folder]:
        if not directory.exists():
            with contextlib.suppress(FileExistsError):
                directory.mkdir(mode=0o700)


def _write_private(path: Path, data: bytes) -> None:
    """Write a file atomically (readers never see half a token), readable by its owner only (0600).

    The temporary file has an unpredictable name and is created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and mode
    0600 - what :func:`tempfile.mkstemp` does (CPython ``tempfile._text_openflags``) - so a file or symbolic link
    another user planted next to ``path`` is never opened. The rename replaces a link at ``path`` itself rather
    than following it.
    """
    _private_folders(path.parent)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _private_state_dir(path: Path) -> Path:
    """Create ``path`` with mode 0700, or accept it only if it is a directory of this user with mode 0700."""
    _private_folders(path.parent)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass  # an existing directory is checked below, never changed
    else:
        path.chmod(0o700)  # the umask may have taken bits away; a directory just made is ours to set
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeStateDir(path, "a symbolic link")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeStateDir(path, "not a directory")
    if info.st_uid != os.geteuid():
        raise UnsafeStateDir(path, f"owned by uid {info.st_uid}, not by you (uid {os.geteuid()})")
    mode = stat.S_IMODE(info.st_mode)
    if mode != 0o700:
        raise UnsafeStateDir(path, f"mode {mode:04o}, not 0700")
    return path


class Emulator:
    """One emulator run: an Entra ID authority host plus one origin per Dataverse environment and Key Vault."""

    def __init__(
        self,
        seed: Seed | str | Path,
        *,
        state_dir: str | Path | None = None,
        ports: Mapping[str, int] | None = None,
        limits: ServiceProtectionLimits | None = None,
        keys: KeyMaterial | None = None,
    ) -> None:
        """``ports`` pins origins to fixed ports: key ``"entra"`` for the authority host, else an environment or
        key vault name. Unpinned origins get ephemeral ports. ``limits`` are the service protection limits every
        Dataverse environment enforces per caller (default: Microsoft's documented 6,000 requests and 1,200 s of
        execution time per 300 s, 52 concurrent requests). ``keys`` shares one CA and RSA keys between runs (tests);
        by default each start makes its own."""
        self.seed = seed if isinstance(seed, Seed) else load_seed(seed)
        names = {"entra"} | {e.name for t in self.seed.tenants for e in t.environments}
        names |= {k.name for t in self.seed.tenants for k in t.key_vaults}
        unknown = sorted(set(ports or {}) - names)
        if unknown:
            raise ValueError(f"ports: unknown origin {unknown[0]!r}; allowed: {', '.join(sorted(names))}")
        self._ports = dict(ports or {})
        self.limits = limits or ServiceProtectionLimits()
        self._keys = keys
        self._protection = {e.name: ServiceProtection(self.limits) for t in self.seed.tenants for e in t.environments}
        self._state_dir_arg = Path(state_dir) if state_dir is not None else None
        self.state_dir: Path | None = None
        self.log = RequestLog()
        self.faults = FaultInjector()
        self._dataverse_states: dict[str, DataverseEnvironment] = {}
        self._keyvault_states: dict[str, KeyVaultState] = {}
        for tenant in self.seed.tenants:
            for env in tenant.environments:
                self._dataverse_states[env.name] = DataverseEnvironment.from_seed(env, tenant)
            for vault in tenant.key_vaults:
                self._keyvault_states[vault.name] = KeyVaultState.from_seed(vault, tenant)
        self._server: HttpsServer | None = None
        self._entra: EntraService | None = None
        self._urls: dict[str, str] = {}
        self._info: dict[str, Any] | None = None
        self._federated: list[tuple[Path, str]] = []  # (token file, subject)
        self._stop_remint = threading.Event()
        self._remint_thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def start(self) -> Emulator:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        if self._state_dir_arg is None:
            self.state_dir = Path(tempfile.mkdtemp(prefix="adp-identity-emulator-"))
        else:
            self.state_dir = _private_state_dir(self._state_dir_arg)
        try:
            self._start(self.state_dir)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, state: Path) -> None:
        keys = self._keys or KeyMaterial()
        ca = keys.ca
        rsa_keys = keys.rsa_keys()
        server_cert = ca.issue_server_certificate()
        _write_private(state / "ca.pem", ca.pem())
        _write_private(state / "server.pem", server_cert.cert_pem)
        _write_private(state / "server-key.pem", server_cert.key_pem)
        self._server = server = HttpsServer(
            tls_context(state / "server.pem", state / "server-key.pem"), self.log, self.faults
        )
        authority = server.listen(self._ports.get("entra"))
        for tenant in self.seed.tenants:
            for origin_name in [e.name for e in tenant.environments] + [k.name for k in tenant.key_vaults]:
                self._urls[origin_name] = server.listen(self._ports.get(origin_name))
        resources = {t.id: [self._urls[e.name] for e in t.environments] for t in self.seed.tenants}
        self._entra = entra = EntraService(
            self.seed.tenants,
            authority,
            resources=resources,
            issuer_names=(FEDERATED_ISSUER,),
            signing_key=SigningKey.generate("adp-identity emulator token signing", next(rsa_keys)),
            issuer_key=SigningKey.generate("adp-identity emulator federated issuer", next(rsa_keys)),
        )
        server.route(authority, Route(entra, "entra", kind_of=entra.kind_of))
        for tenant in self.seed.tenants:
            services: list[tuple[str, str, Service]] = []
            for env in tenant.environments:
                dataverse = DataverseService(
                    self._dataverse_states[env.name],
                    origin=self._urls[env.name],
                    tenant_id=tenant.id,
                    verify=entra.verify,
                    directory=entra,
                    authority=entra.authority,
                )
                services.append((env.name, "dataverse", dataverse))
            for vault in tenant.key_vaults:
                keyvault = KeyVaultService(
                    self._keyvault_states[vault.name],
                    origin=self._urls[vault.name],
                    tenant_id=tenant.id,
                    verify=entra.verify,
                    directory=entra,
                    authority=entra.authority,
                )
                services.append((vault.name, "keyvault", keyvault))
            for name, kind, service in services:
                server.route(self._urls[name], Route(service, kind, name, protection=self._protection.get(name)))
        identities = self._provision_credentials(ca, rsa_keys, state)
        self._info = self._document(authority, state / "ca.pem", identities)
        server.start()
        self._stop_remint.clear()
        self._remint_thread = threading.Thread(target=self._remint_loop, name="emulator token re-mint", daemon=True)
        self._remint_thread.start()

    def _provision_credentials(
        self, ca: CertificateAuthority, rsa_keys: Iterator[rsa.RSAPrivateKey], state: Path
    ) -> list[dict[str, str]]:
        """Generate every app's credentials, register them with Entra, and describe each app with credentials
        once: name, tenant, ids, then one key per credential it has (``federated_token_file``, ``secret``,
        ``certificate_path``, in that order)."""
        assert self._entra is not None
        entra = self._entra
        issuer = entra.issuer(FEDERATED_ISSUER)
        identities: list[dict[str, str]] = []
        for tenant in self.seed.tenants:
            folder = state / "identities" / _safe(tenant.name)
            for app in tenant.applications:
                if not app.credentials:
                    continue
                identity = {
                    "name": app.name,
                    "tenant": tenant.name,
                    "client_id": app.client_id,
                    "object_id": app.object_id,
                }
                for kind in sorted(app.credentials, key=_KIND_ORDER.index):
                    if kind == "secret":
                        secret = secrets.token_urlsafe(30)
                        entra.add_secret(tenant.id, app.client_id, secret)
                        identity["secret"] = secret
                    elif kind == "certificate":
                        certificate = ca.issue_client_certificate(app.name, next(rsa_keys))
                        entra.add_certificate(tenant.id, app.client_id, certificate.certificate)
                        path = folder / f"{_safe(app.name)}.pem"
                        _write_private(path, certificate.pem())
                        identity["certificate_path"] = str(path)
                    else:
                        subject = _subject(app)
                        entra.add_federated_credential(
                            tenant.id, app.client_id, FederatedCredential(issuer.url, subject, (FEDERATION_AUDIENCE,))
                        )
                        path = folder / f"{_safe(app.name)}.federated-token"
                        _write_private(path, issuer.mint(subject).encode("ascii"))
                        self._federated.append((path, subject))
                        identity["federated_token_file"] = str(path)
                identities.append(identity)
        return identities

    def _remint_loop(self) -> None:
        while not self._stop_remint.wait(_REMINT_INTERVAL):
            self.remint_federated_tokens()

    def remint_federated_tokens(self) -> None:
        """Rewrite every federated token file with a fresh token (the emulator does this hourly by itself)."""
        entra = self._require_entra()
        issuer = entra.issuer(FEDERATED_ISSUER)
        for path, subject in self._federated:
            _write_private(path, issuer.mint(subject).encode("ascii"))

    def _document(self, authority: str, ca_bundle: Path, identities: list[dict[str, str]]) -> dict[str, Any]:
        return {
            "authority_host": authority,
            "ca_bundle": str(ca_bundle),
            "tenants": [{"name": t.name, "id": t.id, "domain": t.domain} for t in self.seed.tenants],
            "environments": [
                {"name": e.name, "tenant": t.name, "url": self._urls[e.name]}
                for t in self.seed.tenants
                for e in t.environments
            ],
            "key_vaults": [
                {"name": k.name, "tenant": t.name, "url": self._urls[k.name]}
                for t in self.seed.tenants
                for k in t.key_vaults
            ],
            "identities": identities,
        }

    def stop(self) -> None:
        """Stop serving and close every connection; a temporary state directory is removed."""
        self._stop_remint.set()
        if self._remint_thread is not None:
            self._remint_thread.join(timeout=5)
            self._remint_thread = None
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._state_dir_arg is None and self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.state_dir = None
        self._federated.clear()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what tests, the demo and the CLI read ---------------------------------------------------------------------

    def _require_entra(self) -> EntraService:
        if self._entra is None or self._server is None:
            raise RuntimeError("the emulator is not running; call start() or use it as a context manager")
        return self._entra

    @property
    def entra(self) -> EntraService:
        """The emulated Entra ID (e.g. to mint a token a test needs, or to verify one)."""
        return self._require_entra()

    @property
    def info(self) -> dict[str, Any]:
        """The ``--json-file`` document: authority_host, ca_bundle, tenants, environments, key_vaults, identities."""
        self._require_entra()
        assert self._info is not None
        copy: dict[str, Any] = json.loads(json.dumps(self._info))  # a copy the caller may change
        return copy

    @property
    def authority_host(self) -> str:
        return self._require_entra().authority

    @property
    def ca_bundle(self) -> str:
        return str(self.info["ca_bundle"])

    def write_info(self, path: str | Path) -> None:
        """Write :attr:`info` as JSON (owner-only: it holds the generated secrets)."""
        _write_private(Path(path), (json.dumps(self.info, indent=2) + "\n").encode("utf-8"))

    def tenant(self, name: str) -> TenantSeed:
        for tenant in self.seed.tenants:
            if tenant.name == name:
                return tenant
        raise KeyError(f"no tenant named {name!r}; allowed: {', '.join(t.name for t in self.seed.tenants)}")

    def environment_url(self, name: str) -> str:
        self._require_entra()
        if name not in self._dataverse_names():
            raise KeyError(f"no environment named {name!r}; allowed: {', '.join(self._dataverse_names())}")
        return self._urls[name]

    def key_vault_url(self, name: str) -> str:
        self._require_entra()
        vaults = [k.name for t in self.seed.tenants for k in t.key_vaults]
        if name not in vaults:
            raise KeyError(f"no key vault named {name!r}; allowed: {', '.join(vaults)}")
        return self._urls[name]

    def _dataverse_names(self) -> list[str]:
        return [e.name for t in self.seed.tenants for e in t.environments]

    def identities(self, tenant_name: str | None = None) -> list[dict[str, str]]:
        return [i for i in self.info["identities"] if tenant_name is None or i["tenant"] == tenant_name]

    def identity(self, tenant_name: str, application: str | None = None, kind: str | None = None) -> dict[str, str]:
        """An identity of ``info["identities"]``: by default the tenant's deploying one (the first listed).

        ``application`` (name or client id) and ``kind`` (``federated`` / ``secret`` / ``certificate``) pick
        another, e.g. ``identity("DefraDev", "adp-platform-admin", "secret")``.
        """
        self.tenant(tenant_name)
        for identity in self.identities(tenant_name):
            if application is not None and application not in (identity["name"], identity["client_id"]):
                continue
            if kind is not None and _CREDENTIAL_KEY.get(kind, kind) not in identity:
                continue
            return identity
        raise KeyError(f"no identity of tenant {tenant_name!r} matches application={application!r} kind={kind!r}")

    def credential_env(self, tenant_name: str, application: str | None = None) -> dict[str, str]:
        """Environment variables under which DefaultAzureCredential acts as this identity - via workload identity
        federation only, so no credential ever probes IMDS, a developer CLI or a public authority host."""
        identity = self.identity(tenant_name, application, "federated")
        ca_bundle = self.ca_bundle
        return {
            "AZURE_AUTHORITY_HOST": self.authority_host,
            "AZURE_TENANT_ID": self.tenant(tenant_name).id,
            "AZURE_CLIENT_ID": identity["client_id"],
            "AZURE_FEDERATED_TOKEN_FILE": identity["federated_token_file"],
            "AZURE_TOKEN_CREDENTIALS": "WorkloadIdentityCredential",
            "REQUESTS_CA_BUNDLE": ca_bundle,
            "SSL_CERT_FILE": ca_bundle,
            LOOPBACK_VAULTS_ENV: " ".join(k["url"] for k in self.info["key_vaults"]),
        }

    def service_protection(self, env_name: str) -> ServiceProtection:
        """The environment's service protection counters (per caller), e.g. to see what is in flight."""
        try:
            return self._protection[env_name]
        except KeyError:
            raise KeyError(f"no environment named {env_name!r}; allowed: {', '.join(self._protection)}") from None

    def dataverse(self, env_name: str) -> DataverseEnvironment:
        """The environment's ``DataverseEnvironment`` state, for arranging and asserting in tests."""
        try:
            return self._dataverse_states[env_name]
        except KeyError:
            raise KeyError(f"no environment named {env_name!r}; allowed: {', '.join(self._dataverse_states)}") from None

    def key_vault(self, name: str) -> KeyVaultState:
        """The vault's ``KeyVaultState``."""
        try:
            return self._keyvault_states[name]
        except KeyError:
            raise KeyError(f"no key vault named {name!r}; allowed: {', '.join(self._keyvault_states)}") from None


def _subject(app: ApplicationSeed) -> str:
    assert app.federated_subject is not None  # the seed loader guarantees it for a federated credential
    return app.federated_subject
