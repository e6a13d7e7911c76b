"""Pacing at Dataverse's service-protection limits, per (caller, environment) (issue 8 section 2).

Deterministic: a fake clock that only the test (or a fake sleep) moves, threads that block on gates the test
opens, and assertions on states reached, never on how long something took.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from providers._identity import token_caller
from providers.dataverse._batch import BatchRequest, encode_change_set
from providers.dataverse._pacing import (
    BURST_REMAINING,
    DOP_HINT,
    PACING,
    TIME_REMAINING,
    Budget,
    Limits,
    Pacer,
    WaitTooLong,
)
from providers.dataverse._transport import API_PATH, Call, Transport
from providers.dataverse.client import DataverseClient
from providers.dataverse.errors import DeadlineExceeded

from .fake_dataverse import APP, BU_SELECT, FakeCredential, FakeDataverse, Recorded, Reply, standard_environment
from .fake_dataverse import FakeClock as Clock


class Sleeper:
    """One worker's sleep: records that worker's waits and moves the shared clock by each."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.sleep(seconds)


def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for a state the test needs before its next step (a bounded poll, not a timing assertion)."""
    give_up = time.monotonic() + 60  # generous: CI machines are shared and 60 threads take a while to settle
    while not condition():
        if time.monotonic() > give_up:
            pytest.fail(f"never reached: {what}")
        time.sleep(0.001)


@pytest.fixture
def fake() -> FakeDataverse:
    return standard_environment()


@pytest.fixture
def clock() -> Clock:
    return Clock(start=10_000.0)


def transport_for(
    fake: FakeDataverse, pacer: Pacer, clock: Clock, sleep: Callable[[float], None], token: str = "pacing-test-token"
) -> Transport:
    fake.token = token
    return Transport(
        fake.origin,
        fake.session(),
        lambda: token,
        lambda _token: None,
        max_retry_wait=60.0,
        sleep=sleep,
        rng=random.Random(3),
        monotonic=clock,
        pacer=pacer,
    )


def units(transport: Transport) -> Call:
    url = transport.url("businessunits", f"$select={BU_SELECT}")
    return Call("GET", url, accept=(200,), idempotent=True, headers={"Prefer": "odata.maxpagesize=5000"})


class Gate:
    """Holds every request that reaches the fake until the test lets it go; counts how many are inside at once."""

    def __init__(self, fake: FakeDataverse) -> None:
        self._lock = threading.Lock()
        self._open = threading.Semaphore(0)
        self.inside = 0
        self.most_inside = 0
        self.entered = 0
        fake.unlocked_hooks.append(self._hold)

    def _hold(self, _request: Recorded) -> None:
        with self._lock:
            self.inside += 1
            self.entered += 1
            self.most_inside = max(self.most_inside, self.inside)
        self._open.acquire()
        with self._lock:
            self.inside -= 1

    def let_one_go(self) -> None:
        self._open.release()


def settled(gate: Gate, budget: Budget, *, inside: int, waiting: int) -> None:
    """Every worker is either inside the fake (``inside``) or held back by the budget (``waiting``)."""
    until(
        lambda: gate.inside == inside and budget.waiting == waiting,
        f"{inside} requests inside and {waiting} waiting (saw {gate.inside} and {budget.waiting})",
    )


@contextmanager
def workers(count: int, work: Callable[[], Any]) -> Iterator[list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # a worker's failure fails the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield errors
    finally:
        for thread in threads:
            thread.join(timeout=20)
        assert not any(t.is_alive() for t in threads), "a worker never finished"


# -- concurrency --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cap", "threads"), [(3, 10), (52, 60)])
def test_requests_in_flight_never_exceed_the_cap(fake: FakeDataverse, clock: Clock, cap: int, threads: int) -> None:
    pacer = Pacer(Limits(concurrency=cap), clock)
    transport = transport_for(fake, pacer, clock, Sleeper(clock))
    budget = pacer.budget(None, fake.origin)
    gate = Gate(fake)
    with workers(threads, lambda: transport.json(units(transport))) as errors:
        for released in range(threads):
            held = min(cap, threads - released)
            settled(gate, budget, inside=held, waiting=threads - released - held)
            assert budget.in_flight == gate.inside == held
            gate.let_one_go()
    assert not errors
    assert gate.most_inside == budget.max_in_flight == cap
    assert gate.entered == fake.count() == threads


def test_the_servers_dop_hint_lowers_the_cap(fake: FakeDataverse, clock: Clock) -> None:
    pacer = Pacer(clock=clock)  # the documented 52
    transport = transport_for(fake, pacer, clock, Sleeper(clock))
    budget = pacer.budget(None, fake.origin)
    assert budget.cap == 52
    fake.inject("reply", reply=Reply(200, {"value": []}, {DOP_HINT: "2"}))
    transport.json(units(transport))
    assert budget.cap == 2
    gate = Gate(fake)
    with workers(6, lambda: transport.json(units(transport))) as errors:
        for released in range(6):
            held = min(2, 6 - released)
            settled(gate, budget, inside=held, waiting=6 - released - held)
            gate.let_one_go()
    assert not errors and gate.most_inside == 2


def test_a_dop_hint_above_the_documented_limit_is_not_followed_up() -> None:
    budget = Budget(clock=Clock())
    slot = budget.acquire(remaining=lambda: 60.0, sleep=lambda _: None)
    budget.release(slot, {DOP_HINT: "500"})
    assert budget.cap == 52
    slot = budget.acquire(remaining=lambda: 60.0, sleep=lambda _: None)
    budget.release(slot, {DOP_HINT: "not a number"})
    assert budget.cap == 52


# -- a 429 pauses every worker of the environment -------------------------------------------------------------------


def test_a_429_seen_by_one_worker_delays_the_others(fake: FakeDataverse, clock: Clock) -> None:
    pacer = Pacer(clock=clock)
    times: list[float] = []
    fake.hooks.append(lambda r: times.append(clock()))
    asleep, wake = threading.Event(), threading.Event()
    first_waits: list[float] = []

    def first_sleep(seconds: float) -> None:  # the worker that got the 429 sleeps until the test wakes it
        first_waits.append(seconds)
        asleep.set()
        assert wake.wait(20)

    first = transport_for(fake, pacer, clock, first_sleep)
    other_sleep = Sleeper(clock)
    other = transport_for(fake, pacer, clock, other_sleep)  # another client of the same caller and environment
    fake.inject("throttle", retry_after=10)
    started = clock()
    with workers(1, lambda: first.json(units(first))) as errors:
        until(asleep.is_set, "the first worker sleeping out its Retry-After")
        other.json(units(other))  # had it not been paused, it would go now
        assert other_sleep.waits == [10.0]
        assert times[1] == started + 10.0  # the other's request went only when the pause was over
        wake.set()
    assert not errors
    assert first_waits == [10.0]  # the worker that received the 429 did not wait for it twice
    assert [r.status for r in fake.requests] == [429, 200, 200]
    assert pacer.budget(None, fake.origin).pauses == 1


def test_a_pause_longer_than_pacing_may_hold_a_call_ends_it_before_sending(fake: FakeDataverse, clock: Clock) -> None:
    pacer = Pacer(clock=clock)
    transport = transport_for(fake, pacer, clock, Sleeper(clock))
    transport.max_pacing_wait = 120.0
    pacer.budget(None, fake.origin).pause(3600)  # capped at one window: 300 s, still past the 120 s allowed
    with pytest.raises(DeadlineExceeded) as raised:
        transport.json(units(transport))
    assert str(raised.value).startswith(
        f"Dataverse environment {fake.origin}: waiting 300 s more for the Retry-After of a 429 in this environment "
        "would pass the 120 s one operation may be held back by pacing"
    )
    assert raised.value.maybe_committed is False
    assert fake.count() == 0


def test_clients_of_one_caller_share_the_process_wide_budget(fake: FakeDataverse) -> None:
    credential = FakeCredential()
    fake.token = credential.token
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    one = DataverseClient(fake.origin, credential, session=fake.session(), sleep=lambda _: None)
    two = DataverseClient(fake.origin, credential, session=fake.session(), sleep=sleep)
    fake.inject("throttle", retry_after="0.2")
    assert one.get_application_user(APP) is None
    assert PACING.budget(None, fake.origin).pauses == 1
    assert two.get_application_user(APP) is None
    assert waits and 0 < sum(waits) <= 0.2  # the second client waited out what was left of the first one's 429


# -- the sliding window ---------------------------------------------------------------------------------------------


def test_the_window_refuses_the_6001st_request_until_the_oldest_ages_out() -> None:
    clock = Clock()
    budget = Budget(clock=clock)
    first = clock()
    for _ in range(6000):
        budget.release(budget.acquire(remaining=lambda: 180.0, sleep=pytest.fail))
        clock.advance(0.01)  # 6,000 requests in the first minute
    assert budget.in_window == 6000
    sleeps = Sleeper(clock)
    slot = budget.acquire(remaining=lambda: 600.0, sleep=sleeps)
    assert slot.started == pytest.approx(first + 300.0)  # not before the oldest left the 300 s window
    assert sleeps.waits == [pytest.approx(300.0 - 60.0)]
    assert budget.in_window == 6000  # the oldest out, the 6,001st in


def test_through_the_transport_the_window_holds_back_a_request_and_a_batch_counts_once(
    fake: FakeDataverse, clock: Clock
) -> None:
    pacer = Pacer(Limits(requests=3), clock)
    sleeper = Sleeper(clock)
    transport = transport_for(fake, pacer, clock, sleeper)
    budget = pacer.budget(None, fake.origin)
    times: list[float] = []
    fake.hooks.append(lambda r: times.append(clock()))
    user = fake.add_user(APP)
    roles = [fake.role_id("Basic User"), fake.role_id("Environment Maker"), fake.role_id("ADP Identity Manager")]
    content_type, body = encode_change_set(
        [
            BatchRequest(
                "POST",
                f"{API_PATH}systemusers({user})/systemuserroles_association/$ref",
                {"@odata.id": f"{fake.origin}{API_PATH}roles({role})"},
            )
            for role in roles
        ]
    )
    batch = Call(
        "POST",
        transport.url("$batch"),
        accept=(200,),
        idempotent=False,
        body=body,
        headers={"Content-Type": content_type},
        accept_multipart=True,
    )
    transport.send(batch)  # three operations, one request
    assert budget.in_window == 1 and fake.role_names(user) == {
        "Basic User",
        "Environment Maker",
        "ADP Identity Manager",
    }
    clock.advance(1.0)
    transport.json(units(transport))
    transport.json(units(transport))
    assert budget.in_window == 3 and sleeper.waits == []
    transport.json(units(transport))  # the fourth in the window: held until the $batch ages out
    assert sleeper.waits == [pytest.approx(299.0)]
    assert times[3] == pytest.approx(times[0] + 300.0)


def test_execution_time_in_the_window_is_capped_too() -> None:
    clock = Clock()
    budget = Budget(clock=clock)
    never = pytest.fail
    slots = [budget.acquire(remaining=lambda: 180.0, sleep=never) for _ in range(12)]
    clock.advance(100.0)
    for slot in slots:
        budget.release(slot)  # 12 requests of 100 s each: the 1,200 s of the window spent
    sleeps = Sleeper(clock)
    slot = budget.acquire(remaining=lambda: 600.0, sleep=sleeps)
    assert sleeps.waits == [pytest.approx(300.0)]  # until those 1,200 s are 300 s old
    assert slot.started == pytest.approx(10_000.0 + 100.0 + 300.0)


def test_a_window_wait_past_the_deadline_raises_at_once_naming_the_limit() -> None:
    clock = Clock()
    budget = Budget(Limits(requests=2), clock)
    for _ in range(2):
        budget.release(budget.acquire(remaining=lambda: 10.0, sleep=pytest.fail))
    with pytest.raises(WaitTooLong) as raised:
        budget.acquire(remaining=lambda: 10.0, sleep=pytest.fail)
    assert raised.value.seconds == 300.0
    assert raised.value.reason == "the 2-requests-per-300-s window"


# -- Dataverse's x-ms-ratelimit-* headers ---------------------------------------------------------------------------


def test_requests_left_as_dataverse_counts_them_are_followed() -> None:
    clock = Clock()
    budget = Budget(clock=clock)
    never = pytest.fail
    budget.release(budget.acquire(remaining=lambda: 180.0, sleep=never))
    clock.advance(10.0)
    seen = budget.acquire(remaining=lambda: 180.0, sleep=never)
    budget.release(seen, {BURST_REMAINING: "2"})  # two more, says the server (far fewer than our 5,998)
    for _ in range(2):
        budget.release(budget.acquire(remaining=lambda: 180.0, sleep=never))
    sleeps = Sleeper(clock)
    budget.acquire(remaining=lambda: 600.0, sleep=sleeps)
    assert sleeps.waits == [pytest.approx(300.0 - 10.0)]  # until the first request it counted left the window


def test_execution_time_left_as_dataverse_counts_it_is_followed() -> None:
    clock = Clock()
    budget = Budget(clock=clock)
    slot = budget.acquire(remaining=lambda: 180.0, sleep=pytest.fail)
    clock.advance(2.0)
    budget.release(slot, {TIME_REMAINING: "0.00"})
    sleeps = Sleeper(clock)
    budget.acquire(remaining=lambda: 600.0, sleep=sleeps)
    assert sleeps.waits == [pytest.approx(300.0)]  # until the request it counted (2 s of work) left the window


@pytest.mark.parametrize("value", ["1,187.25", "5999"])
def test_remaining_values_that_leave_room_hold_nothing_back(value: str) -> None:
    clock = Clock()
    budget = Budget(clock=clock)
    budget.release(budget.acquire(remaining=lambda: 180.0, sleep=pytest.fail), {TIME_REMAINING: value})
    budget.release(budget.acquire(remaining=lambda: 180.0, sleep=pytest.fail), {BURST_REMAINING: value})
    budget.acquire(remaining=lambda: 180.0, sleep=pytest.fail)


def test_a_spent_value_with_nothing_of_ours_to_age_out_leaves_it_to_the_server() -> None:
    clock = Clock()
    budget = Budget(clock=clock)
    slot = budget.acquire(remaining=lambda: 180.0, sleep=pytest.fail)
    budget.release(slot, {BURST_REMAINING: "0"})
    clock.advance(300.0)  # the request the server counted has aged out: the hint says nothing any more
    budget.acquire(remaining=lambda: 180.0, sleep=pytest.fail)


# -- one budget per (caller, environment) ---------------------------------------------------------------------------


def _jwt(claims: dict[str, str]) -> str:
    def part(value: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


def test_the_budget_is_per_caller_and_environment(clock: Clock) -> None:
    tenant = "a798744b-41a1-41b0-b394-141dbf8496c4"
    pipeline = _jwt({"tid": tenant, "appid": "11111111-1111-4111-8111-111111111111"})
    again = _jwt({"tid": tenant.upper(), "appid": "11111111-1111-4111-8111-111111111111", "exp": "later"})
    reader = _jwt({"tid": tenant, "appid": "22222222-2222-4222-8222-222222222222"})
    assert token_caller(pipeline) == token_caller(again) == f"{tenant}/11111111-1111-4111-8111-111111111111"
    assert token_caller("not-a-jwt") is None
    pacer = Pacer(clock=clock)
    dev, tst = "https://dev.crm11.dynamics.com", "https://tst.crm11.dynamics.com"
    assert pacer.budget(token_caller(pipeline), dev) is pacer.budget(token_caller(again), dev)
    assert pacer.budget(token_caller(pipeline), dev) is not pacer.budget(token_caller(reader), dev)
    assert pacer.budget(token_caller(pipeline), dev) is not pacer.budget(token_caller(pipeline), tst)


def test_a_429_pauses_only_its_own_caller_and_environment(clock: Clock) -> None:
    one, two = standard_environment(), standard_environment()
    pacer = Pacer(clock=clock)
    sleeper = Sleeper(clock)
    first = transport_for(one, pacer, clock, lambda _: None)
    elsewhere = transport_for(two, pacer, clock, sleeper)
    one.inject("throttle", retry_after=30)
    first.json(units(first))
    elsewhere.json(units(elsewhere))  # another environment: not paused
    assert sleeper.waits == [] and pacer.budget(None, one.origin).pauses == 1
