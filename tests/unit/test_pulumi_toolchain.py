"""The Pulumi CLI's own path into the program, proven without the CLI.

``Pulumi.yaml`` says ``toolchain: uv`` and ``virtualenv: .venv``; the pipelines set ``UV_FROZEN=1``. What the CLI
then does (pulumi/pulumi, read at 3.259, the newest tag fetched; the pinned CLI is newer):

- **the program** (``sdk/python/toolchain/uv.go``, ``uv.Command``, since pkg/v3.186.0 (#20117)): ``uv sync
  --inexact`` in the project root with ``UV_PROJECT_ENVIRONMENT=<root>/.venv`` added to the CLI's environment, then
  ``<root>/.venv/bin/python <pulumi-language-python-exec> --monitor … --engine … --project … --root_directory …
  --stack … --pwd <program dir> --dry_run … --parallel … --organization … <entry point>`` in the root, with the
  virtualenv activated (``sdk/python/cmd/pulumi-language-python/main.go``, ``Run`` and ``constructArguments``;
  the program directory and entry point come from ``main`` as ``pkg/engine/project.go`` ``getPwdMain`` computes
  them). CLIs before 3.186 ran the same arguments as ``uv run python …``. Both are run here.
- **each Python dynamic provider** (``sdk/python/dist/pulumi-resource-pulumi-python``, started by
  ``sdk/go/common/resource/plugin/provider_plugin.go`` in the program directory with every runtime option as
  ``PULUMI_RUNTIME_<OPTION>``): ``$PWD/<virtualenv>/bin/python -u -m pulumi.dynamic <engine>``, the virtualenv
  resolved against the *program directory* (pulumi/pulumi#7061). No uv there; ``uv run --module pulumi.dynamic``
  (what a ``uv run`` user types, and what issue 7 names) is run as well.

The CLI's ``pulumi-language-python-exec`` is not in the SDK wheel, so a stand-in does its part (configure the
runtime from the same arguments, then ``run_in_stack`` the entry point with ``runpy``); the process, interpreter,
working directory, environment and arguments are the CLI's. It talks to a strict fake engine on 127.0.0.1, so the
program runs to the end: imports, desired-state loading, every registration (dynamic providers serialized in the
CLI's environment). All of it on a fresh ``git clone`` of HEAD after ``make install``, exactly what CI has.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import select
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc, provider_pb2_grpc, resource_pb2, resource_pb2_grpc

from adp_identity.desired.yamlsafe import read_yaml

REPO = Path(__file__).resolve().parents[2]
STACK = "defradev"
GIT = shutil.which("git")
MAKE = shutil.which("make")
DEADLINE = 90  # seconds for any one process here; the whole module runs in well under a minute
PORT_DEADLINE = 30  # the host prints its port within a second or two


# -- what the pipelines give the CLI ------------------------------------------------------------------------------


def pipeline_environment() -> dict[str, str]:
    """The uv/Pulumi settings every pipeline exports: the GitHub workflows' `env:` and the Azure DevOps variables.

    Both CI systems must agree (a test in test_azure_pipelines.py says so too); the union is what the CLI sees.
    """
    settings: dict[str, str] = {}
    for name in ("preview", "deploy", "drift"):
        env = read_yaml(REPO / ".github" / "workflows" / f"{name}.yml").data["env"]
        settings.update({k: str(v) for k, v in env.items() if k.startswith(("UV_", "PULUMI_SKIP"))})
    variables = read_yaml(REPO / ".azuredevops" / "templates" / "variables.yaml").data["variables"]
    for variable in variables:
        if variable["name"].startswith(("UV_", "PULUMI_SKIP")):
            assert settings.get(variable["name"], str(variable["value"])) == str(variable["value"]), variable
            settings[variable["name"]] = str(variable["value"])
    assert settings["UV_FROZEN"] == "1", "the pipelines run uv frozen: the lock is the only source of versions"
    return settings


@dataclass(frozen=True)
class ProjectLayout:
    """Where the CLI runs things for this project (Pulumi.yaml, as `getPwdMain` and `parseOptions` read it)."""

    root: Path
    program_dir: Path
    entry_point: str
    options: dict[str, str]

    @property
    def virtualenv(self) -> Path:  # the language host: relative to the project root (toolchain.PythonOptions.Root)
        return self.root / self.options["virtualenv"]


def layout(root: Path) -> ProjectLayout:
    project = yaml.safe_load((root / "Pulumi.yaml").read_text(encoding="utf-8"))
    main = project.get("main")
    if not main:
        program_dir, entry = root, "."
    else:
        target = (root / main).resolve()
        program_dir, entry = (target, ".") if target.is_dir() else (target.parent, target.name)
    options = {k: str(v) for k, v in project["runtime"]["options"].items()}
    return ProjectLayout(root, program_dir, entry, options)


def stack_config(root: Path, stack: str) -> tuple[str, str]:
    """PULUMI_CONFIG and PULUMI_CONFIG_SECRET_KEYS as the CLI hands them over (secrets decrypted: placeholders)."""
    config = yaml.safe_load((root / "stacks" / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))["config"]
    values: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in config.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            values[key] = f"placeholder for {key}"
            secret_keys.append(key)
        else:
            values[key] = value if isinstance(value, str) else json.dumps(value)
    return json.dumps(values), json.dumps(secret_keys)


# -- a strict fake of the engine ---------------------------------------------------------------------------------


@dataclass
class FakeEngine:
    """ResourceMonitor + Engine on 127.0.0.1: answers what a preview needs, records everything, refuses the rest."""

    address: str = ""
    registrations: list[resource_pb2.RegisterResourceRequest] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    logs: list[tuple[int, str]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def types(self) -> list[str]:
        return [r.type for r in self.registrations]


@pytest.fixture
def fake_engine() -> Iterator[FakeEngine]:
    engine = FakeEngine()

    class Monitor(resource_pb2_grpc.ResourceMonitorServicer):
        def SupportsFeature(self, request: Any, context: Any) -> Any:
            return resource_pb2.SupportsFeatureResponse(hasSupport=False)  # the plainest engine the SDK supports

        def RegisterResource(self, request: Any, context: Any) -> Any:
            with engine.lock:
                engine.registrations.append(request)
            urn = f"urn:pulumi:{STACK}::adp-identity::{request.type}::{request.name}"
            return resource_pb2.RegisterResourceResponse(urn=urn, id="", object=struct_pb2.Struct())

        def RegisterResourceOutputs(self, request: Any, context: Any) -> Any:
            with engine.lock:
                engine.outputs.append(request.urn)
            return empty_pb2.Empty()

        def Invoke(self, request: Any, context: Any) -> Any:
            with engine.lock:
                engine.unexpected.append(f"Invoke {request.tok}")
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "fake engine: no invokes in this test")

    class Engine(engine_pb2_grpc.EngineServicer):
        def Log(self, request: Any, context: Any) -> Any:
            with engine.lock:
                engine.logs.append((request.severity, request.message))
            return empty_pb2.Empty()

        def GetRootResource(self, request: Any, context: Any) -> Any:
            return engine_pb2.GetRootResourceResponse(urn="")

        def SetRootResource(self, request: Any, context: Any) -> Any:
            return engine_pb2.SetRootResourceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    resource_pb2_grpc.add_ResourceMonitorServicer_to_server(Monitor(), server)
    engine_pb2_grpc.add_EngineServicer_to_server(Engine(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    engine.address = f"127.0.0.1:{port}"
    try:
        yield engine
    finally:
        server.stop(grace=None)


# The part of the CLI's pulumi-language-python-exec that matters here, from its documented arguments.
EXEC_STAND_IN = """\
import argparse, asyncio, os, runpy, sys
import pulumi.runtime
parser = argparse.ArgumentParser()
for name in ("project", "root_directory", "stack", "parallel", "dry_run", "pwd", "monitor", "engine", "tracing",
             "organization"):
    parser.add_argument("--" + name)
parser.add_argument("PROGRAM")
parser.add_argument("ARGS", nargs="*")
args = parser.parse_args()
pulumi.runtime.set_all_config(pulumi.runtime.get_config_env(), pulumi.runtime.get_config_secret_keys_env())
pulumi.runtime.configure(pulumi.runtime.Settings(
    monitor=args.monitor, engine=args.engine, project=args.project, stack=args.stack,
    parallel=int(args.parallel), dry_run=args.dry_run == "true", organization=args.organization,
    root_directory=args.root_directory))
sys.argv = [args.PROGRAM] + args.ARGS
os.chdir(args.pwd)
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
loop.run_until_complete(pulumi.runtime.run_in_stack(lambda: runpy.run_path(args.PROGRAM, run_name="__main__")))
"""


# -- the clone -----------------------------------------------------------------------------------------------------


def base_environment(clone: Path) -> dict[str, str]:
    """The job's environment after the setup step: the pipelines' settings, .tools/bin and .venv/bin on PATH."""
    keep = {k: v for k, v in os.environ.items() if k in {"HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE"}}
    path = os.pathsep.join([str(clone / ".tools" / "bin"), str(clone / ".venv" / "bin"), os.environ["PATH"]])
    return {**keep, **pipeline_environment(), "PATH": path}


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone of HEAD with `make install` run in it: the .venv CI and a new developer have."""
    if GIT is None or MAKE is None or not (REPO / ".git").exists():
        pytest.skip("needs git, make and a git checkout (CI and every developer have all three)")
    head = subprocess.run(
        [GIT, "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    target = tmp_path_factory.mktemp("clone") / "adp-identity"
    subprocess.run([GIT, "clone", "--quiet", "--no-checkout", str(REPO), str(target)], check=True, timeout=DEADLINE)
    subprocess.run([GIT, "-C", str(target), "checkout", "--quiet", head], check=True, timeout=DEADLINE)
    # The pinned uv comes from this checkout's make install (the same version: checked below), and uv installs from
    # its cache (UV_OFFLINE=1): the clone gets every file make install would download, with no network in the test.
    # Bootstrapping uv with pip and downloading from the index is what this checkout's own make install just did.
    pinned = re.search(r"^UV_VERSION := (\S+)$", (REPO / "Makefile").read_text(encoding="utf-8"), re.MULTILINE)
    source_uv = REPO / ".tools" / "bin" / "uv"
    if pinned is None or not source_uv.exists():
        pytest.skip("make install puts the pinned uv in .tools/ (make test does it first)")
    version = subprocess.run([str(source_uv), "--version"], capture_output=True, text=True, check=True, timeout=30)
    assert version.stdout.split()[1] == pinned[1], f"{source_uv} is not the Makefile's uv {pinned[1]}"
    (target / ".tools" / "bin").mkdir(parents=True)
    shutil.copy2(source_uv, target / ".tools" / "bin" / "uv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV", "PYTEST"))}
    env["UV_OFFLINE"] = "1"
    installed = subprocess.run(
        [MAKE, "--no-print-directory", "install"],
        cwd=target,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, f"make install failed in a fresh clone:\n{installed.stdout}\n{installed.stderr}"
    return target


def run(
    command: list[str], *, cwd: Path, env: Mapping[str, str], timeout: float = DEADLINE
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout, check=False)


def assert_no_lock_error(result: subprocess.CompletedProcess[str]) -> None:
    output = result.stdout + result.stderr
    assert "lockfile" not in output.lower(), output
    assert "UV_FROZEN" not in output, output


def uv(clone: Path) -> str:
    return str(clone / ".tools" / "bin" / "uv")


def program_environment(clone: Path, project: ProjectLayout) -> dict[str, str]:
    config, secret_keys = stack_config(clone, STACK)
    env = base_environment(clone)
    venv = project.virtualenv
    env.update(
        {
            "VIRTUAL_ENV": str(venv),  # toolchain.ActivateVirtualEnv
            "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}",
            "PULUMI_CONFIG": config,
            "PULUMI_CONFIG_SECRET_KEYS": secret_keys,
        }
    )
    return env


def language_host_arguments(project: ProjectLayout, engine: FakeEngine) -> list[str]:
    """`constructArguments` for a preview of the stack."""
    return [
        *("--monitor", engine.address, "--engine", engine.address, "--project", "adp-identity"),
        *("--root_directory", str(project.root), "--stack", STACK, "--pwd", str(project.program_dir)),
        *("--dry_run", "true", "--parallel", "16", "--organization", "organization", project.entry_point),
    ]


def assert_the_whole_program_ran(result: subprocess.CompletedProcess[str], engine: FakeEngine, root: Path) -> None:
    assert_no_lock_error(result)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert engine.unexpected == []
    types = engine.types()
    assert types[0] == "pulumi:pulumi:Stack"
    assert engine.registrations[0].name == f"adp-identity-{STACK}"
    services = sorted(p.stem for p in (root / "stacks" / STACK).glob("*.yaml"))
    assert services, "the example stack declares services"
    registered = sorted(r.name for r in engine.registrations if r.type == "adp-identity:service:Service")
    assert registered == services
    dynamic = [r for r in engine.registrations if r.type.startswith("pulumi-python:dynamic")]
    assert dynamic, "the program registers dynamic resources"
    for resource in dynamic:  # serialized by the program in the CLI's environment, for the provider host to load
        assert resource.object.fields["__provider"].string_value, resource.name
    assert f"urn:pulumi:{STACK}::adp-identity::pulumi:pulumi:Stack::adp-identity-{STACK}" in engine.outputs
    errors = [message for severity, message in engine.logs if severity >= engine_pb2.ERROR]
    assert errors == []


# -- the program ------------------------------------------------------------------------------------------------


def test_the_program_runs_as_the_cli_starts_it_uv_sync_then_the_virtualenv_python(
    clone: Path, fake_engine: FakeEngine, tmp_path: Path
) -> None:
    project = layout(clone)
    assert project.options["toolchain"] == "uv"
    exec_shim = tmp_path / "pulumi-language-python-exec"
    exec_shim.write_text(EXEC_STAND_IN, encoding="utf-8")

    sync_env = {**base_environment(clone), "UV_PROJECT_ENVIRONMENT": str(project.virtualenv)}
    synced = run([uv(clone), "sync", "--inexact"], cwd=clone, env=sync_env)
    assert_no_lock_error(synced)
    assert synced.returncode == 0, synced.stderr

    python = project.virtualenv / "bin" / "python"
    started = time.monotonic()
    result = run(
        [str(python), str(exec_shim), *language_host_arguments(project, fake_engine)],
        cwd=clone,
        env=program_environment(clone, project),
    )
    assert_the_whole_program_ran(result, fake_engine, clone)
    assert time.monotonic() - started < 60


def test_the_program_runs_as_older_clis_start_it_uv_run_python(
    clone: Path, fake_engine: FakeEngine, tmp_path: Path
) -> None:
    project = layout(clone)
    exec_shim = tmp_path / "pulumi-language-python-exec"
    exec_shim.write_text(EXEC_STAND_IN, encoding="utf-8")
    env = {**program_environment(clone, project), "UV_PROJECT_ENVIRONMENT": str(project.virtualenv)}
    result = run(
        [uv(clone), "run", "python", str(exec_shim), *language_host_arguments(project, fake_engine)],
        cwd=project.program_dir,
        env=env,
    )
    assert_the_whole_program_ran(result, fake_engine, clone)


def test_without_uv_lock_the_same_command_stops_at_once(clone: Path) -> None:
    """The failure this module exists to catch (issue 7): prove the check above would see it."""
    project = layout(clone)
    lock = clone / "uv.lock"
    hidden = clone / "uv.lock.hidden"
    lock.rename(hidden)
    try:
        env = {**base_environment(clone), "UV_PROJECT_ENVIRONMENT": str(project.virtualenv)}
        result = run([uv(clone), "sync", "--inexact"], cwd=clone, env=env)
    finally:
        hidden.rename(lock)
    assert result.returncode != 0
    assert "Unable to find lockfile at `uv.lock`, but `UV_FROZEN=1` was provided" in result.stderr


# -- the dynamic-provider host ---------------------------------------------------------------------------------


def dynamic_provider_command(project: ProjectLayout) -> tuple[list[str], Path, dict[str, str]]:
    """`pulumi-resource-pulumi-python`'s choice of interpreter, from the environment the engine gives it.

    The engine starts the script in the program directory with PULUMI_RUNTIME_<OPTION> for every runtime option;
    the script makes PULUMI_RUNTIME_VIRTUALENV (".venv" for toolchain uv when unset) absolute against $PWD, and
    refuses when <venv>/bin/python is missing ("The 'virtualenv' option in Pulumi.yaml is set to ...").
    """
    runtime = {f"PULUMI_RUNTIME_{k.upper()}": v for k, v in project.options.items()}
    virtualenv = runtime.get("PULUMI_RUNTIME_VIRTUALENV") or (
        ".venv" if runtime.get("PULUMI_RUNTIME_TOOLCHAIN") == "uv" else ""
    )
    assert virtualenv, "Pulumi.yaml names no virtualenv or toolchain: the host would run the system python3"
    venv = Path(virtualenv) if Path(virtualenv).is_absolute() else project.program_dir / virtualenv
    python = venv / "bin" / "python"
    assert python.is_file(), (
        f"the dynamic-provider host would stop: the 'virtualenv' option in Pulumi.yaml is set to \"{venv}\", "
        f"but it doesn't exist (the CLI resolves it against the program directory {project.program_dir})"
    )
    env = {**runtime, "PULUMI_PROJECT": "adp-identity", "PULUMI_CONFIG": "{}"}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}"
    return [str(python), "-u", "-m", "pulumi.dynamic"], project.program_dir, env


def test_the_repository_layout_gives_dynamic_providers_the_project_virtualenv() -> None:
    """Quick guard without a clone: `main:` and `virtualenv:` must lead the host to the project's own .venv."""
    project = layout(REPO)
    runtime = {f"PULUMI_RUNTIME_{k.upper()}": v for k, v in project.options.items()}
    virtualenv = runtime.get("PULUMI_RUNTIME_VIRTUALENV", ".venv")
    assert (project.program_dir / virtualenv).resolve() == project.virtualenv.resolve() == (REPO / ".venv").resolve()


def start_host(command: list[str], *, cwd: Path, env: Mapping[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """Start a provider host; return it and the port it printed (what the engine reads first)."""
    process = subprocess.Popen(command, cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    deadline = time.monotonic() + PORT_DEADLINE
    line = b""
    while not line.endswith(b"\n") and time.monotonic() < deadline and process.poll() is None:
        ready, _, _ = select.select([process.stdout], [], [], 1.0)
        if ready:
            line += process.stdout.read1(64)
    text = line.decode(errors="replace").strip()
    if not re.fullmatch(r"[0-9]+", text):
        if process.poll() is None:
            process.kill()
        err = process.communicate(timeout=10)[1].decode(errors="replace")
        pytest.fail(f"the provider host printed no port within {PORT_DEADLINE}s: {text!r}\n{err}")
    return process, int(text)


def stop(process: subprocess.Popen[bytes]) -> str:
    """End a host this test started (by its own handle); return what it wrote on stderr."""
    if process.poll() is None:
        process.terminate()
    try:
        _, err = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate(timeout=10)
    return err.decode(errors="replace")


def assert_serves_the_provider_protocol(port: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        info = provider_pb2_grpc.ResourceProviderStub(channel).GetPluginInfo(empty_pb2.Empty(), timeout=30)
    assert info.version  # the SDK's version: the host is Pulumi's own, from the clone's virtualenv


def test_the_dynamic_provider_host_starts_as_the_cli_starts_it(clone: Path, fake_engine: FakeEngine) -> None:
    project = layout(clone)
    command, cwd, runtime_env = dynamic_provider_command(project)
    env = base_environment(clone)
    env.update({k: v for k, v in runtime_env.items() if k != "PATH"})
    env["PATH"] = runtime_env["PATH"] + env["PATH"]
    process, port = start_host([*command, fake_engine.address], cwd=cwd, env=env)
    try:
        assert_serves_the_provider_protocol(port)
    finally:
        stop(process)


def test_uv_run_module_pulumi_dynamic_starts_and_prints_its_port(clone: Path, fake_engine: FakeEngine) -> None:
    """`uv run --module pulumi.dynamic`, as issue 7 names it, in the pipelines' environment.

    The host writes its port without flushing, so to a pipe it arrives only unbuffered: the CLI's script passes
    ``-u``; a `uv run` caller needs PYTHONUNBUFFERED=1 (without it this test waits for a port that never comes).
    """
    project = layout(clone)
    env = {**base_environment(clone), "UV_PROJECT_ENVIRONMENT": str(project.virtualenv), "PULUMI_PROJECT": "x"}
    env["PYTHONUNBUFFERED"] = "1"
    process, port = start_host(
        [uv(clone), "run", "--module", "pulumi.dynamic", fake_engine.address], cwd=project.program_dir, env=env
    )
    try:
        assert_serves_the_provider_protocol(port)
        assert process.poll() is None
    finally:
        stderr = stop(process)
    assert "lockfile" not in stderr.lower(), stderr


# -- the two lock files -----------------------------------------------------------------------------------------

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)")
HASH = re.compile(r"--hash=(sha256:[0-9a-f]{64})")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements_pins(path: Path) -> dict[tuple[str, str], set[str]]:
    pins: dict[tuple[str, str], set[str]] = {}
    current: tuple[str, str] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if match := PIN.match(line):
            current = (normalize(match[1]), match[2])
            assert current not in pins, f"requirements.lock pins {current} twice"
            pins[current] = set()
        elif line.startswith(("-e ", "--", "git+", "http")) or ("@" in line.split("#")[0] and "==" not in line):
            pytest.fail(f"requirements.lock: {line!r} is not a version pin")
        for digest in HASH.findall(line):
            assert current is not None
            pins[current].add(digest)
    return pins


def uv_lock_pins(path: Path) -> dict[tuple[str, str], set[str]]:
    lock = tomllib.loads(path.read_text(encoding="utf-8"))
    pins: dict[tuple[str, str], set[str]] = {}
    for package in lock["package"]:
        if "registry" not in package["source"]:
            assert package["name"] == "adp-identity", f"uv.lock: {package['name']} is not from the index"
            continue
        digests = {d["hash"] for d in [package.get("sdist", {}), *package.get("wheels", [])] if "hash" in d}
        pins[(normalize(package["name"]), package["version"])] = digests
    return pins


def test_requirements_lock_and_uv_lock_pin_the_same_versions_and_hashes() -> None:
    requirements = requirements_pins(REPO / "requirements.lock")
    locked = uv_lock_pins(REPO / "uv.lock")
    assert len(requirements) > 50
    only_requirements = sorted(set(requirements) - set(locked))
    only_uv_lock = sorted(set(locked) - set(requirements))
    assert (only_requirements, only_uv_lock) == ([], []), "run `make lock` (it writes both) and commit both files"
    for pin, digests in requirements.items():
        assert digests, f"requirements.lock: {pin} has no hash"
        assert digests <= locked[pin], f"requirements.lock: {pin} has hashes uv.lock does not know"


def test_uv_lock_is_current_with_pyproject() -> None:
    uv_binary = REPO / ".tools" / "bin" / "uv"
    if not uv_binary.exists():
        pytest.skip("make install puts the pinned uv in .tools/ (make test does it first)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    result = run(
        [str(uv_binary), "lock", "--check", "--offline"], cwd=REPO, env={**env, "UV_PYTHON_DOWNLOADS": "never"}
    )
    assert result.returncode == 0, f"uv.lock does not match pyproject.toml: run `make lock`\n{result.stderr}"


def test_make_lock_writes_both_files_from_one_resolution() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^lock: .*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe, "Makefile: no lock target"
    lines = [line.strip() for line in recipe[1].splitlines()]
    assert lines[0].startswith("$(UV) lock ")
    assert lines[1].startswith("$(UV) export ") and "--frozen" in lines[1] and lines[1].endswith("-o requirements.lock")
    header = (REPO / "requirements.lock").read_text(encoding="utf-8").splitlines()[1]
    assert header.strip("# ").startswith("uv export --frozen"), "requirements.lock was not written by make lock"
    assert "uv.lock" not in (REPO / ".gitignore").read_text(encoding="utf-8").split()


def test_the_python_running_these_tests_is_the_locked_one() -> None:
    """Sanity: the SDK imported here is the locked one (the fake engine speaks its protocol)."""
    assert ("pulumi", importlib.metadata.version("pulumi")) in uv_lock_pins(REPO / "uv.lock"), sys.version
