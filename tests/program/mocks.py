"""Run the real Pulumi program in-process under mocks, the way ``pulumi preview`` runs it, and record everything.

What ``pulumi preview`` does and what this harness does instead:

- the CLI reads ``Pulumi.yaml`` (``main``, ``stackConfigDir``) and ``stacks/Pulumi.<stack>.yaml``, decrypts the
  ``secure:`` values and hands the program its config as strings (structured values as JSON) plus the list of
  secret keys. Here: `stack_config` reads the same files and replaces each ``secure:`` value by a fake plaintext,
  marked secret with ``set_all_config(..., secret_keys=...)``;
- the Python language host runs the ``main`` directory with ``runpy`` inside ``run_in_stack`` and reports the
  project root. Here: the same calls, with ``pulumi.runtime.set_mocks`` and a recording monitor instead of the
  engine, in preview mode.

Isolation: Pulumi keeps its runtime state (settings, root stack, config, secret keys) in context variables, which
``@pulumi.runtime.test`` resets by hand. Each run here happens in a fresh copy of the context with its own event
loop, so nothing leaks between tests, and nothing of the test's own context is touched.

The fakes are strict: a resource type the program is not expected to create, or any invoke but the lookup of a
platform-owned managed identity, fails the run. That lookup answers from the identities a test says exist
(``platform_identities``) and raises, as the provider does, for any other.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import datetime as dt
import json
import runpy
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import grpc
import pulumi
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc, settings
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _ensure_event_loop

REPO = Path(__file__).resolve().parents[2]

# Resource types (the engine's tokens)
STACK = "pulumi:pulumi:Stack"
SERVICE = "adp-identity:service:Service"
WORKLOAD_IDENTITY = "adp-identity:identity:WorkloadIdentity"
APP_REGISTRATION = "adp-identity:identity:AppRegistration"
SERVICE_SECRETS = "adp-identity:keyvault:ServiceSecrets"
DATAVERSE_ACCESS = "adp-identity:dataverse:DataverseAccess"
IDENTITY = "azure-native:managedidentity:UserAssignedIdentity"
FEDERATED_CREDENTIAL = "azure-native:managedidentity:FederatedIdentityCredential"
KV_SECRET = "azure-native:keyvault:Secret"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
APPLICATION = "azuread:index/application:Application"
SERVICE_PRINCIPAL = "azuread:index/servicePrincipal:ServicePrincipal"
APPLICATION_CERTIFICATE = "azuread:index/applicationCertificate:ApplicationCertificate"
APPLICATION_PASSWORD = "azuread:index/applicationPassword:ApplicationPassword"
KV_CERTIFICATE = "pulumi-python:dynamic/keyvault:KeyVaultCertificate"
APPLICATION_USER = "pulumi-python:dynamic/dataverse:ApplicationUser"
GET_IDENTITY = "azure-native:managedidentity:getUserAssignedIdentity"

COMPONENT_TYPES = frozenset({SERVICE, WORKLOAD_IDENTITY, APP_REGISTRATION, SERVICE_SECRETS, DATAVERSE_ACCESS})
EXPECTED_CUSTOM_TYPES = frozenset(
    {
        IDENTITY,
        FEDERATED_CREDENTIAL,
        KV_SECRET,
        ROLE_ASSIGNMENT,
        APPLICATION,
        SERVICE_PRINCIPAL,
        APPLICATION_CERTIFICATE,
        KV_CERTIFICATE,
        APPLICATION_USER,
    }
)
FAKE_TENANT_ID = "11111111-2222-3333-4444-555555555555"
_FAKE_IDS = uuid.UUID("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")


def fake_guid(*parts: str) -> str:
    """A GUID the fakes give a resource: deterministic, so two runs of one tree agree."""
    return str(uuid.uuid5(_FAKE_IDS, "|".join(parts)))


# -- recorded registrations ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AliasSpec:
    """One alias as the program sent it: a full URN, or a spec whose empty fields mean "as now"."""

    urn: str = ""
    name: str = ""
    type: str = ""
    parent_urn: str = ""
    no_parent: bool = False


@dataclass(frozen=True)
class Registration:
    """One RegisterResource call as the engine would receive it."""

    urn: str
    type: str
    name: str
    custom: bool
    parent: str  # parent URN
    inputs: dict[str, Any]  # deserialized as the mock sees them: secrets stay wrapped (rpc.is_rpc_secret)
    aliases: tuple[AliasSpec, ...]
    dependencies: frozenset[str]  # URNs this resource was ordered after (depends_on and input dependencies)
    outputs: dict[str, Any]  # what the fakes answered
    import_id: str = ""  # the `import` resource option: the id of an existing resource to adopt ("" = none)
    retain_on_delete: bool = False  # the `retain_on_delete` resource option


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, keeping every registration (parent, aliases, dependencies) and the stack's outputs."""

    def __init__(self, mocks: FakeAzure) -> None:
        super().__init__(mocks)
        self.fakes = mocks
        self.registrations: list[Registration] = []
        self.stack_outputs: dict[str, Any] = {}
        self.thread_loops: set[asyncio.AbstractEventLoop] = set()
        self._lock = threading.Lock()

    def _note_thread_loop(self) -> None:
        """The SDK gives each executor thread its own event loop and never closes it; remember it to close it."""
        loop = _ensure_event_loop()  # type: ignore[no-untyped-call]
        with self._lock:
            self.thread_loops.add(loop)

    def RegisterResource(self, request: Any) -> Any:
        self._note_thread_loop()
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type == STACK:
            return response
        registration = Registration(
            urn=response.urn,
            type=request.type,
            name=request.name,
            custom=bool(request.custom),
            parent=request.parent,
            inputs=rpc.deserialize_properties(request.object),
            aliases=tuple(_alias(alias) for alias in request.aliases),
            dependencies=frozenset(request.dependencies),
            outputs=self.resources[response.urn].state,
            import_id=request.importId,
            retain_on_delete=bool(request.retainOnDelete),
        )
        with self._lock:
            self.registrations.append(registration)
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:
        self._note_thread_loop()
        if request.urn.split("::")[2] == STACK:
            outputs = rpc.deserialize_properties(request.outputs)
            with self._lock:
                self.stack_outputs.update(outputs)
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]


def _alias(alias: Any) -> AliasSpec:
    if alias.HasField("spec"):
        spec = alias.spec
        return AliasSpec(name=spec.name, type=spec.type, parent_urn=spec.parentUrn, no_parent=bool(spec.noParent))
    return AliasSpec(urn=alias.urn)


# -- the fakes -----------------------------------------------------------------------------------------------


@cache
def fake_public_certificate(label: str) -> tuple[str, str, str, str]:
    """(cer, thumbprint, not_before, not_after): a real self-signed public certificate, no key kept anywhere."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, label)])
    not_before = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    not_after = not_before + dt.timedelta(days=365)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    return (
        base64.b64encode(der).decode(),
        certificate.fingerprint(hashes.SHA1()).hex().upper(),
        not_before.isoformat().replace("+00:00", "Z"),
        not_after.isoformat().replace("+00:00", "Z"),
    )


def _slot(certificate_name: str, slot: str) -> dict[str, str]:
    cer, thumbprint, not_before, not_after = fake_public_certificate(f"{certificate_name}/{slot}")
    return {
        "version": fake_guid(certificate_name, slot).replace("-", ""),
        "thumbprint": thumbprint,
        "cer": cer,
        "not_before": not_before,
        "not_after": not_after,
    }


class InvokeFailed(grpc.RpcError):
    """A failed invoke as the resource monitor reports it: a gRPC error (code UNKNOWN) with the reason."""

    def __init__(self, details: str) -> None:
        super().__init__(details)
        self._details = details

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNKNOWN

    def details(self) -> str:
        return self._details


@dataclass(frozen=True)
class ExistingIdentity:
    """A user-assigned identity that exists in Azure already (made by ADP's Helm library), for the lookup."""

    client_id: str
    principal_id: str
    tenant_id: str = FAKE_TENANT_ID


class FakeAzure(pulumi.runtime.Mocks):
    """Plausible ids and outputs for each resource type the program may create; anything else fails the run.

    ``identities``: (resource group, identity name) -> the identity the lookup finds; any other lookup raises.
    """

    def __init__(self, identities: Mapping[tuple[str, str], ExistingIdentity] | None = None) -> None:
        self.identities = dict(identities or {})
        self.invokes: list[tuple[str, dict[str, Any]]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if not args.custom:
            if args.typ not in COMPONENT_TYPES:
                raise AssertionError(f"unexpected component type {args.typ} ({args.name})")
            return "", {}
        inputs = dict(args.inputs)
        name = args.name
        if args.typ == IDENTITY and args.resource_id:
            # an import: the provider reads the identity that exists (the platform made it), ids and all
            existing = self.identities.get((str(inputs["resourceGroupName"]), str(inputs["resourceName"])))
            if existing is None:
                raise AssertionError(f"import of an identity that does not exist: {args.resource_id}")
            return args.resource_id, {
                **inputs,
                "name": inputs["resourceName"],
                "clientId": existing.client_id,
                "principalId": existing.principal_id,
                "tenantId": existing.tenant_id,
            }
        if args.typ in EXPECTED_CUSTOM_TYPES and args.resource_id:
            return args.resource_id, inputs  # an import keeps the id it was given
        if args.typ == IDENTITY:
            return (
                f"/subscriptions/fake/resourceGroups/{inputs['resourceGroupName']}/providers/"
                f"Microsoft.ManagedIdentity/userAssignedIdentities/{inputs['resourceName']}",
                {
                    **inputs,
                    "name": inputs["resourceName"],
                    "clientId": fake_guid(name, "client"),
                    "principalId": fake_guid(name, "principal"),
                    "tenantId": FAKE_TENANT_ID,
                },
            )
        if args.typ == APPLICATION:
            object_id = fake_guid(name, "object")
            return f"/applications/{object_id}", {
                **inputs,
                "clientId": fake_guid(name, "client"),
                "objectId": object_id,
            }
        if args.typ == SERVICE_PRINCIPAL:
            return fake_guid(name, "sp"), {**inputs, "objectId": fake_guid(name, "sp")}
        if args.typ == KV_CERTIFICATE:
            certificate = str(inputs["certificate_name"])
            slot_b = _slot(certificate, "b")
            return f"{inputs['vault_url']}/certificates/{certificate}", {
                **inputs,
                "slot_a": _slot(certificate, "a"),
                "slot_b": slot_b,
                "current_version": slot_b["version"],
            }
        if args.typ == APPLICATION_USER:
            user_id = fake_guid(name, "systemuser")
            return user_id, {**inputs, "systemuser_id": user_id}
        if args.typ in EXPECTED_CUSTOM_TYPES:
            return f"{name}-id", inputs
        raise AssertionError(f"unexpected resource type {args.typ} ({name})")

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        inputs = dict(args.args)
        self.invokes.append((args.token, inputs))
        if args.token != GET_IDENTITY:
            raise AssertionError(f"unexpected invoke {args.token}")
        group, name = inputs["resourceGroupName"], inputs["resourceName"]
        found = self.identities.get((group, name))
        if found is None:
            # What the engine answers when azure-native's invoke meets ARM's 404: a gRPC error whose details
            # carry the provider's message (the engine's resource monitor wraps it as "invocation of <token>
            # returned an error"). Raising it here takes the SDK's real path for a failed invoke.
            raise InvokeFailed(
                f"invocation of {GET_IDENTITY} returned an error: request failed: Status=404 "
                f'Code="ResourceNotFound" Message="The Resource \'Microsoft.ManagedIdentity/'
                f"userAssignedIdentities/{name}' under resource group '{group}' was not found.\""
            )
        return {
            "id": f"/subscriptions/fake/resourceGroups/{group}/providers/Microsoft.ManagedIdentity/"
            f"userAssignedIdentities/{name}",
            "name": name,
            "location": "uksouth",
            "clientId": found.client_id,
            "principalId": found.principal_id,
            "tenantId": found.tenant_id,
            "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
        }, []  # no check failures (the mock monitor iterates them)


# -- one run of the program ----------------------------------------------------------------------------------


@dataclass
class ProgramRun:
    registrations: list[Registration]
    stack_outputs: dict[str, Any]
    error: BaseException | None
    secret_values: dict[str, str] = field(default_factory=dict)  # config key -> the fake plaintext given
    invokes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (token, args) the program invoked

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def named(self, type_: str, name: str) -> Registration:
        matches = [r for r in self.registrations if r.type == type_ and r.name == name]
        assert len(matches) == 1, f"{len(matches)} registrations of {type_} {name!r}"
        return matches[0]

    def by_urn(self) -> dict[str, Registration]:
        return {r.urn: r for r in self.registrations}

    def urns(self) -> set[str]:
        return {r.urn for r in self.registrations}

    def children(self, parent: Registration) -> list[Registration]:
        return [r for r in self.registrations if r.parent == parent.urn]

    def descendants(self, root: Registration) -> list[Registration]:
        found: list[Registration] = []
        pending = [root]
        while pending:
            current = pending.pop()
            for child in self.children(current):
                found.append(child)
                pending.append(child)
        return found


@dataclass(frozen=True)
class ProjectFile:
    root: Path
    name: str
    main: Path
    stack_config_dir: Path


def read_project(root: Path) -> ProjectFile:
    """Pulumi.yaml as the CLI reads it: name, main (relative to it), stackConfigDir."""
    data = yaml.safe_load((root / "Pulumi.yaml").read_text(encoding="utf-8"))
    return ProjectFile(
        root=root,
        name=data["name"],
        main=root / data.get("main", "."),
        stack_config_dir=root / data.get("stackConfigDir", "."),
    )


@dataclass
class StackConfig:
    values: dict[str, str]  # full key -> value as Pulumi hands it to a program
    secret_keys: list[str]
    secret_values: dict[str, str]  # full key -> the fake plaintext standing in for the decrypted value

    def without(self, *keys: str) -> StackConfig:
        """As after ``pulumi config rm``."""
        return StackConfig(
            {k: v for k, v in self.values.items() if k not in keys},
            [k for k in self.secret_keys if k not in keys],
            {k: v for k, v in self.secret_values.items() if k not in keys},
        )


def stack_config(project: ProjectFile, stack: str) -> StackConfig:
    """The stack file's config as the CLI passes it: strings, JSON for structured values, secure -> secret."""
    document = yaml.safe_load((project.stack_config_dir / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))
    values: dict[str, str] = {}
    secret_keys: list[str] = []
    secret_values: dict[str, str] = {}
    for raw_key, raw_value in (document.get("config") or {}).items():
        key = raw_key if ":" in raw_key else f"{project.name}:{raw_key}"
        value, secret = _decrypt(raw_value, key)
        if secret:
            secret_keys.append(key)
            secret_values[key] = value
        values[key] = value
    return StackConfig(values, secret_keys, secret_values)


def _decrypt(value: Any, key: str) -> tuple[str, bool]:
    """A fake decryption: each ``secure:`` value becomes a unique plaintext the tests can search for."""
    if isinstance(value, dict) and set(value) == {"secure"}:
        return f"fake-plaintext-of-{key}-{uuid.uuid4().hex}", True
    found_secret = False

    def walk(node: Any) -> Any:
        nonlocal found_secret
        if isinstance(node, dict):
            if set(node) == {"secure"}:
                found_secret = True
                return f"fake-plaintext-{uuid.uuid4().hex}"
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    if isinstance(value, dict | list):
        return json.dumps(walk(value)), found_secret
    if isinstance(value, bool):
        return ("true" if value else "false"), False
    return str(value), False


def run_program(
    project_root: Path,
    stack: str,
    config: StackConfig | None = None,
    *,
    platform_identities: Mapping[tuple[str, str], ExistingIdentity] | None = None,
) -> ProgramRun:
    """Run the project's ``main`` for `stack` as ``pulumi preview`` would, against the fakes."""
    project = read_project(project_root)
    config = config if config is not None else stack_config(project, stack)
    main = project.main

    def program() -> None:
        runpy.run_path(str(main), run_name="__main__")

    run = _run(
        program,
        project=project.name,
        stack=stack,
        root=project_root,
        config=config,
        fakes=FakeAzure(platform_identities),
    )
    run.secret_values = dict(config.secret_values)
    return run


def run_inline(
    program: Callable[[], None],
    *,
    stack: str = "unit",
    config: StackConfig | None = None,
    platform_identities: Mapping[tuple[str, str], ExistingIdentity] | None = None,
) -> ProgramRun:
    """Run a small program (components built directly) under the same fakes and recording."""
    config = config or StackConfig({}, [], {})
    return _run(
        program, project="adp-identity", stack=stack, root=REPO, config=config, fakes=FakeAzure(platform_identities)
    )


def _run(
    program: Callable[[], None], *, project: str, stack: str, root: Path, config: StackConfig, fakes: FakeAzure
) -> ProgramRun:
    monitor = RecordingMonitor(fakes)
    error: list[BaseException] = []

    def in_fresh_runtime() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            # set_mocks would register a root stack of its own (what @pulumi.runtime.test relies on); the language
            # host instead creates the stack inside run_in_stack, which registers the program's exports. Keep the
            # host's way: hide the root while set_mocks runs, then clear it.
            settings.ROOT.set(_PLACEHOLDER_ROOT)  # type: ignore[arg-type]
            pulumi.runtime.set_mocks(fakes, project=project, stack=stack, preview=True, monitor=monitor)
            settings.ROOT.set(None)
            settings.SETTINGS.outputs = set()
            settings.SETTINGS.package_refs = {}
            settings.SETTINGS.root_directory = str(root)  # what the CLI reports as the project root
            pulumi.runtime.set_all_config(dict(config.values), list(config.secret_keys))
            loop.run_until_complete(run_in_stack(program))
        except BaseException as exc:
            error.append(exc)
        finally:
            loop.run_until_complete(loop.shutdown_default_executor())  # joins the executor threads
            loop.close()
            asyncio.set_event_loop(None)
            for thread_loop in monitor.thread_loops - {loop}:
                thread_loop.close()

    contextvars.copy_context().run(in_fresh_runtime)
    return ProgramRun(
        registrations=list(monitor.registrations),
        stack_outputs=dict(monitor.stack_outputs),
        error=error[0] if error else None,
        invokes=list(fakes.invokes),
    )


_PLACEHOLDER_ROOT = object()


# -- project copies ------------------------------------------------------------------------------------------


def copy_project(destination: Path) -> Path:
    """A copy of Pulumi.yaml and the stacks tree to edit, running the repository's own program."""
    project = read_project(REPO)
    shutil.copy2(REPO / "Pulumi.yaml", destination / "Pulumi.yaml")
    shutil.copytree(project.stack_config_dir, destination / project.stack_config_dir.relative_to(REPO))
    if project.main == REPO:  # the program is ./__main__.py (Pulumi.yaml has no `main`)
        (destination / "__main__.py").symlink_to(REPO / "__main__.py")
    else:
        (destination / project.main.relative_to(REPO)).symlink_to(project.main, target_is_directory=True)
    return destination


# -- helpers for assertions ----------------------------------------------------------------------------------


def secret_value(value: Any) -> Any:
    """The plaintext inside a value the mock saw as a secret; fails if it was not a secret."""
    assert rpc.is_rpc_secret(value), f"expected a secret, got {value!r}"
    return rpc.unwrap_rpc_secret(value)


def plain(value: Any) -> Any:
    """A value with every secret wrapper removed (for comparing values that are secret for other reasons)."""
    if rpc.is_rpc_secret(value):
        return plain(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def occurrences(value: Any, needle: str, *, inside_secret: bool = False) -> Iterator[tuple[str, bool]]:
    """Where `needle` appears in `value`: (path, whether it sat inside a secret wrapper)."""

    def walk(node: Any, path: str, secret: bool) -> Iterator[tuple[str, bool]]:
        if rpc.is_rpc_secret(node):
            yield from walk(rpc.unwrap_rpc_secret(node), path, True)
        elif isinstance(node, dict):
            for key, item in node.items():
                if needle in str(key):
                    yield f"{path}.{key}(key)", secret
                yield from walk(item, f"{path}.{key}", secret)
        elif isinstance(node, list):
            for index, item in enumerate(node):
                yield from walk(item, f"{path}[{index}]", secret)
        elif needle in str(node):
            yield path, secret

    yield from walk(value, "", inside_secret)


def walk_keys(value: Any) -> Iterator[str]:
    """Every mapping key anywhere in `value` (secrets unwrapped)."""
    value = plain(value)
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from walk_keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk_keys(item)


def engine_aliases(run: ProgramRun, registration: Registration) -> set[str]:
    """The old URNs the engine would match `registration` against, as it computes them from alias specs.

    A resource's own aliases (a spec's empty fields mean "as now"), plus one alias per alias of its parent: the
    child's name with the parent's current name at its start replaced by the aliased parent's name, under the
    aliased parent (the engine's inherited child aliases; the Python SDK's ``inherited_child_alias``).
    """
    by_urn = run.by_urn()

    def urn_name(urn: str) -> str:
        return urn.rsplit("::", maxsplit=1)[-1]

    def aliases_of(reg: Registration) -> set[str]:
        found: set[str] = set()
        for alias in reg.aliases:
            if alias.urn:
                found.add(alias.urn)
                continue
            parent = "" if alias.no_parent else (alias.parent_urn or reg.parent)
            found.add(_make_urn(parent, alias.type or reg.type, alias.name or reg.name, reg.urn))
        parent_reg = by_urn.get(reg.parent)
        if parent_reg is not None:
            for parent_alias in aliases_of(parent_reg):
                name = reg.name
                if name.startswith(parent_reg.name):
                    name = urn_name(parent_alias) + name[len(parent_reg.name) :]
                found.add(_make_urn(parent_alias, reg.type, name, reg.urn))
        return found

    return aliases_of(registration)


def _make_urn(parent: str, type_: str, name: str, like: str) -> str:
    """A URN in the same stack and project as `like`, built as the mock monitor builds URNs."""
    prefix = like.split("::")
    stack, project = prefix[0].removeprefix("urn:pulumi:"), prefix[1]
    qualified = type_
    if parent:
        qualified = parent.split("::")[2].rsplit("$", maxsplit=1)[-1] + "$" + type_
    return "urn:pulumi:" + "::".join([stack, project, qualified, name])


def inputs_without_provider(registration: Registration) -> dict[str, Any]:
    """Inputs minus the serialized dynamic provider blob (its bytes differ between processes)."""
    return {k: v for k, v in registration.inputs.items() if k != "__provider"}
