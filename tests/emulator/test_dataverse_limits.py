"""Dataverse's service protection limits in the emulator: real counters per caller and environment.

One test per limit over real HTTPS with small limits (number of requests, where a ``$batch`` is one request;
execution time; concurrent requests), the rate-limit headers, and the sliding window and Retry-After arithmetic
on a fake clock. Codes, messages and headers: Microsoft Learn "Service protection API limits" (api-limits.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import requests

from adp_identity_emulator import Emulator, ServiceProtectionLimits
from adp_identity_emulator.dataverse.limits import (
    CONCURRENCY_CODE,
    EXECUTION_TIME_CODE,
    REQUESTS_CODE,
    Refusal,
    ServiceProtection,
    Ticket,
)
from tests.emulator.dataverse_helpers import Op, batch_body
from tests.emulator.sessions import dataverse_session

pytestmark = pytest.mark.emulator

API = "/api/data/v9.2/"
ADMIN = "adp-platform-admin"
PIPELINE = "adp-identity-pipeline"


def _whoami(emu: Emulator, env: str = "defradev-dev") -> str:
    return f"{emu.environment_url(env)}{API}WhoAmI"


def _error(reply: requests.Response) -> dict[str, str]:
    error: dict[str, str] = reply.json()["error"]
    return error


# -- over HTTPS, one test per limit ---------------------------------------------------------------------------------


def test_the_number_of_requests_is_limited_per_caller_and_environment(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(limits=ServiceProtectionLimits(requests=3))
    admin = dataverse_session(emu)
    assert [admin.get(_whoami(emu), timeout=10).status_code for _ in range(3)] == [200, 200, 200]
    refused = admin.get(_whoami(emu), timeout=10)
    assert refused.status_code == 429
    assert _error(refused) == {
        "code": "0x80072322",
        "message": "Number of requests exceeded the limit of 3 over time window of 300 seconds.",
    }
    # the oldest of the three leaves the 300 s window in just under 300 s
    assert 298 <= int(refused.headers["Retry-After"]) <= 300
    assert refused.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "0"
    assert admin.get(_whoami(emu), timeout=10).status_code == 429  # still inside the window
    # per caller: the pipeline has its own budget; per environment: defradev-tst has its own counters
    assert dataverse_session(emu, PIPELINE).get(_whoami(emu), timeout=10).status_code == 200
    tst = dataverse_session(emu, environment="defradev-tst")
    assert tst.get(_whoami(emu, "defradev-tst"), timeout=10).status_code == 200
    refusals = emu.log.filter(service="dataverse", status=429)
    assert len(refusals) == 2 and all(e.fault is None for e in refusals)  # the limit, not an injected fault


def test_a_batch_counts_as_one_request(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(limits=ServiceProtectionLimits(requests=2))
    admin = dataverse_session(emu)
    base = f"{emu.environment_url('defradev-dev')}{API}"
    content_type, body = batch_body([Op("GET", f"{base}WhoAmI") for _ in range(3)])
    batch = admin.post(f"{base}$batch", data=body, headers={"Content-Type": content_type}, timeout=10)
    assert batch.status_code == 200
    assert batch.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "1"  # three operations, one request
    assert admin.get(_whoami(emu), timeout=10).status_code == 200
    assert _error(admin.get(_whoami(emu), timeout=10))["code"] == REQUESTS_CODE


def test_the_combined_execution_time_is_limited(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(limits=ServiceProtectionLimits(execution_seconds=0.05))
    admin = dataverse_session(emu)
    emu.faults.script("latency", count=2, path_contains="WhoAmI", latency_ms=40)  # counted as execution time
    assert [admin.get(_whoami(emu), timeout=10).status_code for _ in range(2)] == [200, 200]
    refused = admin.get(_whoami(emu), timeout=10)
    assert refused.status_code == 429
    assert _error(refused) == {
        "code": "0x80072321",
        "message": "Combined execution time of incoming requests exceeded limit of 50 milliseconds over time window "
        "of 300 seconds. Decrease number of concurrent requests or reduce the duration of requests and try again "
        "later.",
    }
    assert 298 <= int(refused.headers["Retry-After"]) <= 300
    assert refused.headers["x-ms-ratelimit-time-remaining-xrm-requests"] == "0.00"


def test_injected_latency_is_not_execution_time_when_told_so(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(limits=ServiceProtectionLimits(execution_seconds=0.05, count_latency=False))
    admin = dataverse_session(emu)
    emu.faults.script("latency", count=3, path_contains="WhoAmI", latency_ms=40)
    assert [admin.get(_whoami(emu), timeout=10).status_code for _ in range(3)] == [200, 200, 200]


def test_concurrent_requests_are_limited(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(limits=ServiceProtectionLimits(concurrent=1))
    admin, pipeline = dataverse_session(emu), dataverse_session(emu, PIPELINE)
    admin_id = emu.identity("DefraDev", ADMIN)["client_id"]
    emu.faults.script("latency", count=1, path_contains="WhoAmI", latency_ms=1500)  # holds the first one open
    first: list[int] = []
    slow = threading.Thread(target=lambda: first.append(admin.get(_whoami(emu), timeout=20).status_code))
    slow.start()
    protection = emu.service_protection("defradev-dev")
    deadline = time.monotonic() + 5
    while protection.in_flight(admin_id) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert protection.in_flight(admin_id) == 1
    second = dataverse_session(emu).get(_whoami(emu), timeout=10)  # another connection, the same caller
    assert second.status_code == 429
    assert _error(second) == {"code": "0x80072326", "message": "Number of concurrent requests exceeded the limit of 1."}
    assert second.headers["Retry-After"] == "1"
    assert pipeline.get(_whoami(emu), timeout=10).status_code == 200  # another caller is not affected
    slow.join(timeout=20)
    assert first == [200]
    assert protection.in_flight(admin_id) == 0
    assert admin.get(_whoami(emu), timeout=10).status_code == 200


def test_every_answer_carries_the_dop_hint_and_the_remaining_budget(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator(limits=ServiceProtectionLimits(requests=10, dop_hint=7))
    admin = dataverse_session(emu)
    replies = [admin.get(_whoami(emu), timeout=10) for _ in range(2)]
    assert [r.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] for r in replies] == ["9", "8"]
    for reply in replies:
        assert reply.headers["x-ms-dop-hint"] == "7"
        remaining = reply.headers["x-ms-ratelimit-time-remaining-xrm-requests"]  # "1,199.99": seconds, as recorded
        assert remaining.count(".") == 1 and len(remaining.split(".")[1]) == 2
        assert 1199.0 < float(remaining.replace(",", "")) <= 1200.0
    anonymous = requests.get(_whoami(emu), verify=emu.ca_bundle, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["x-ms-dop-hint"] == "7"
    assert "x-ms-ratelimit-burst-remaining-xrm-requests" not in anonymous.headers


def test_the_defaults_are_the_documented_limits(emulator: Emulator) -> None:
    assert emulator.limits == ServiceProtectionLimits(requests=6000, execution_seconds=1200.0, concurrent=52)
    reply = dataverse_session(emulator).get(_whoami(emulator), timeout=10)
    assert reply.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "5999"
    assert reply.headers["x-ms-dop-hint"] == "48"


# -- the counters on a fake clock -----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _admitted(verdict: Ticket | Refusal) -> Ticket:
    assert isinstance(verdict, Ticket), verdict
    return verdict


def test_the_request_window_slides() -> None:
    clock = Clock()
    protection = ServiceProtection(ServiceProtectionLimits(requests=2, window_seconds=10), clock)
    protection.finish(_admitted(protection.admit("app")), 0.0)
    clock.now += 1
    protection.finish(_admitted(protection.admit("APP")), 0.0)  # appids compare case-insensitively
    clock.now += 1
    refused = protection.admit("app")
    assert refused == Refusal(
        REQUESTS_CODE, "Number of requests exceeded the limit of 2 over time window of 10 seconds.", 8
    )
    clock.now += 8.5  # the first request left the window: one slot again
    protection.finish(_admitted(protection.admit("app")), 0.0)
    refused = protection.admit("app")
    assert isinstance(refused, Refusal) and refused.retry_after == 1  # the second one leaves 0.5 s later
    assert isinstance(protection.admit("other"), Ticket)


def test_execution_time_frees_when_enough_of_it_leaves_the_window() -> None:
    clock = Clock()
    protection = ServiceProtection(ServiceProtectionLimits(execution_seconds=3, window_seconds=100), clock)
    for seconds in (2.0, 2.0):
        ticket = _admitted(protection.admit("app"))
        clock.now += 1
        protection.finish(ticket, seconds)  # completed at 1001 and 1002; 4 s in all
    refused = protection.admit("app")
    assert isinstance(refused, Refusal) and refused.code == EXECUTION_TIME_CODE
    assert refused.retry_after == 99  # at 1101 the first leaves, and 2 s < 3 s
    assert protection.headers("app")["x-ms-ratelimit-time-remaining-xrm-requests"] == "0.00"
    clock.now = 1101.0
    assert isinstance(protection.admit("app"), Ticket)


def test_concurrency_counts_what_is_in_flight_and_refused_requests_do_not_count() -> None:
    clock = Clock()
    protection = ServiceProtection(ServiceProtectionLimits(requests=3, concurrent=2), clock)
    first, second = _admitted(protection.admit("app")), _admitted(protection.admit("app"))
    refused = protection.admit("app")
    assert refused == Refusal(CONCURRENCY_CODE, "Number of concurrent requests exceeded the limit of 2.", 1)
    protection.finish(first, 0.1)
    third = _admitted(protection.admit("app"))  # the refusal above took no slot of the three
    protection.finish(second, 0.1)
    protection.finish(third, 0.1, counted=False)  # answered 401: nobody's request
    assert protection.headers("app")["x-ms-ratelimit-burst-remaining-xrm-requests"] == "1"
    assert protection.in_flight("app") == 0


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="requests must be at least 1"):
        ServiceProtectionLimits(requests=0)
    with pytest.raises(ValueError, match="execution_seconds must be positive"):
        ServiceProtectionLimits(execution_seconds=0)
