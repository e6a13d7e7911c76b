"""Shared fixtures: a running emulator per test, and a guard that keeps every test on the loopback interface.

The emulators of one test session share one CA and one set of RSA keys (:class:`KeyMaterial` with ``reuse``):
RSA-2048 generation is most of an emulator's start-up. The fixture is session-scoped, so under pytest-xdist each
worker process makes its own; it is held in memory only, never written where another worker could read it.

The guard matters because the cloud SDKs under test reach for the network on their own (MSAL's instance
discovery calls login.microsoftonline.com, DefaultAzureCredential probes IMDS at 169.254.169.254). A test
that would do so fails loudly here instead of quietly talking to the internet.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adp_identity_emulator import DEFAULT_SEED, Emulator, KeyMaterial, load_seed
from adp_identity_emulator.seed_model import Seed

_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def _is_loopback(host: Any) -> bool:
    if host is None or host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(str(host).strip("[]")).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse name lookups and connections to anything but 127.0.0.1 / ::1 / localhost (in this process)."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_loopback(host.decode() if isinstance(host, bytes) else host):
            raise OSError(f"test tried to resolve {host!r}: only loopback is allowed in tests")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise OSError(f"test tried to connect to {address[0]!r}: only loopback is allowed in tests")
        real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)


EmulatorFactory = Callable[..., Emulator]


@pytest.fixture(scope="session")
def emulator_keys() -> KeyMaterial:
    """One CA and one set of RSA keys for every emulator of this test session (of this xdist worker)."""
    return KeyMaterial(reuse=True)


@pytest.fixture
def make_emulator(tmp_path: Path, emulator_keys: KeyMaterial) -> Iterator[EmulatorFactory]:
    """Start emulators from a seed path or a :class:`Seed` (default: the packaged seed); all stop at teardown.

    Keyword arguments go to :class:`Emulator` (``ports=``, ``state_dir=``, ``limits=``, ``keys=``); the state
    directory defaults to a fresh folder under the test's ``tmp_path``, the keys to the session's.
    """
    started: list[Emulator] = []

    def factory(seed: Seed | str | Path = DEFAULT_SEED, **kwargs: Any) -> Emulator:
        loaded = seed if isinstance(seed, Seed) else load_seed(seed)
        kwargs.setdefault("state_dir", tmp_path / f"emulator-{len(started)}")
        kwargs.setdefault("keys", emulator_keys)
        emulator = Emulator(loaded, **kwargs)
        started.append(emulator)
        return emulator.start()

    yield factory
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emulator(make_emulator: EmulatorFactory) -> Emulator:
    """A running emulator on the default seed, its state in the test's tmp_path."""
    return make_emulator()


# -- the fast subset (`make test-fast`): no emulator, no provider host ----------------------------------------

_SLOW_DIRECTORIES = {"emulator": "emulator", "bench": "emulator"}
_EMULATOR_FIXTURES = {"emulator", "make_emulator"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark by where a test lives and what it uses, so `-m "not emulator and not grpc"` leaves out every slow one."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(Path(__file__).parent).parts
        marker = _SLOW_DIRECTORIES.get(parts[0]) if len(parts) > 1 else None
        if marker:
            item.add_marker(marker)
        if _EMULATOR_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker("emulator")


def pytest_configure(config: pytest.Config) -> None:
    """Under `make test-fast` (ADP_IDENTITY_TEST_FAST=1) a test that starts an emulator or a provider host without
    its marker fails, whatever the fixture's scope, so the fast subset never silently grows slow again."""
    import os

    if os.environ.get("ADP_IDENTITY_TEST_FAST") != "1":
        return
    from adp_identity_sandbox.provider_host import ProviderHost

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("this test starts an emulator or a provider host: mark it emulator or grpc")

    Emulator.start = refuse  # type: ignore[method-assign]
    ProviderHost.__enter__ = refuse  # type: ignore[method-assign]
