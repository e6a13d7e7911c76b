"""Drive Pulumi's own dynamic-provider host over gRPC, exactly as ``pulumi up`` does (tests and the demo).

``python -u -m pulumi.dynamic`` is the process the Pulumi engine starts for dynamic resources: it prints its
port, then serves the ResourceProvider gRPC service. Talking to it from a test proves what mocks cannot: the
provider is importable by reference from the installed package, it survives dill serialization, and its results
cross the wire in the shape the engine reads.

The engine strips secrets before calling a provider that answered ``acceptSecrets: false`` (the dynamic host
does), so properties are sent here as plain values. Unknown values (preview) are the engine's sentinel string.
Numbers cross the wire as doubles: an int sent comes back as a float, as it does under the real engine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parents[1]
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # the engine's "unknown during preview" sentinel
PROVIDER_KEY = "__provider"


class ProviderCallError(Exception):
    """The host answered a call with a gRPC error (the provider raised). ``details`` is what the engine shows."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{method}: {code.name}: {details}")
        self.method = method
        self.code = code
        self.details = details

    @property
    def last_line(self) -> str:
        """The exception line at the end of the traceback the host sends (what a user reads first)."""
        lines = [line for line in self.details.strip().splitlines() if line.strip()]
        return lines[-1] if lines else ""


@dataclass
class CheckResult:
    inputs: dict[str, Any]
    failures: list[tuple[str, str]]


@dataclass
class DiffResult:
    changes: int  # provider_pb2.DiffResponse.DIFF_NONE / DIFF_SOME / DIFF_UNKNOWN
    replaces: list[str]
    delete_before_replace: bool

    @property
    def has_changes(self) -> bool:
        return self.changes == provider_pb2.DiffResponse.DIFF_SOME


def _struct(props: Mapping[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(dict(props))
    return s


def _dict(s: struct_pb2.Struct) -> dict[str, Any]:
    out: dict[str, Any] = json_format.MessageToDict(s)
    return out


class ProviderHost:
    """One ``python -m pulumi.dynamic`` process, started in the repo root with the given environment."""

    def __init__(self, provider: Any, *, env: Mapping[str, str] | None = None, type_token: str) -> None:
        self.provider_blob = serialize_provider(provider)
        self.type_token = type_token
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env.setdefault("PULUMI_PROJECT", "adp-identity")
        self._proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "pulumi.dynamic"],
            cwd=REPO_ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        port_line = self._proc.stdout.readline().decode().strip()
        if not port_line.isdigit():
            err = self._proc.stderr.read().decode() if self._proc.stderr else ""
            self._proc.kill()
            raise RuntimeError(f"provider host did not start: {port_line!r} {err}")
        self.port = int(port_line)
        self._stderr_chunks: list[bytes] = []
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()
        self._channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = provider_pb2_grpc.ResourceProviderStub(self._channel)

    def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        for chunk in iter(lambda: self._proc.stderr.read(4096) if self._proc.stderr else b"", b""):
            self._stderr_chunks.append(chunk)

    @property
    def stderr(self) -> str:
        return b"".join(self._stderr_chunks).decode(errors="replace")

    def urn(self, name: str) -> str:
        return f"urn:pulumi:test::adp-identity::{self.type_token}::{name}"

    def _with_provider(self, props: Mapping[str, Any]) -> dict[str, Any]:
        return {**props, PROVIDER_KEY: self.provider_blob}

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self.stub, method)(request, timeout=120)
        except grpc.RpcError as exc:  # the host aborts with UNKNOWN + traceback when the provider raises
            raise ProviderCallError(method, exc.code(), exc.details() or "") from None

    # -- the calls the engine makes -------------------------------------------------------------------------
    def configure(self, config: Mapping[str, str] | None = None) -> None:
        self._call("Configure", provider_pb2.ConfigureRequest(args=_struct(config or {})))

    def check(self, news: Mapping[str, Any], olds: Mapping[str, Any] | None = None, *, name: str = "r") -> CheckResult:
        req = provider_pb2.CheckRequest(
            urn=self.urn(name),
            olds=_struct(self._with_provider(olds) if olds else {}),
            news=_struct(self._with_provider(news)),
        )
        resp = self._call("Check", req)
        inputs = _dict(resp.inputs)
        inputs.pop(PROVIDER_KEY, None)
        return CheckResult(inputs, [(f.property, f.reason) for f in resp.failures])

    def diff(self, id_: str, olds: Mapping[str, Any], news: Mapping[str, Any], *, name: str = "r") -> DiffResult:
        req = provider_pb2.DiffRequest(
            id=id_,
            urn=self.urn(name),
            olds=_struct(self._with_provider(olds)),
            news=_struct(self._with_provider(news)),
        )
        resp = self._call("Diff", req)
        return DiffResult(resp.changes, list(resp.replaces), resp.deleteBeforeReplace)

    def create(self, props: Mapping[str, Any], *, name: str = "r") -> tuple[str, dict[str, Any]]:
        req = provider_pb2.CreateRequest(urn=self.urn(name), properties=_struct(self._with_provider(props)))
        resp = self._call("Create", req)
        outs = _dict(resp.properties)
        outs.pop(PROVIDER_KEY, None)
        return resp.id, outs

    def read(
        self, id_: str, props: Mapping[str, Any], inputs: Mapping[str, Any] | None = None, *, name: str = "r"
    ) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
        req = provider_pb2.ReadRequest(
            id=id_,
            urn=self.urn(name),
            properties=_struct(self._with_provider(props)),
            inputs=_struct(self._with_provider(inputs or {})),
        )
        resp = self._call("Read", req)
        outs = _dict(resp.properties)
        outs.pop(PROVIDER_KEY, None)
        new_inputs = _dict(resp.inputs) if resp.HasField("inputs") else None
        if new_inputs is not None:
            new_inputs.pop(PROVIDER_KEY, None)
        return resp.id, outs, new_inputs

    def update(self, id_: str, olds: Mapping[str, Any], news: Mapping[str, Any], *, name: str = "r") -> dict[str, Any]:
        req = provider_pb2.UpdateRequest(
            id=id_,
            urn=self.urn(name),
            olds=_struct(self._with_provider(olds)),
            news=_struct(self._with_provider(news)),
        )
        resp = self._call("Update", req)
        outs = _dict(resp.properties)
        outs.pop(PROVIDER_KEY, None)
        return outs

    def delete(self, id_: str, props: Mapping[str, Any], *, name: str = "r") -> None:
        req = provider_pb2.DeleteRequest(id=id_, urn=self.urn(name), properties=_struct(self._with_provider(props)))
        self._call("Delete", req)

    # -- lifecycle -----------------------------------------------------------------------------------------
    def close(self) -> None:
        self._channel.close()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> ProviderHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
