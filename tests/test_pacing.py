"""flows.pacing.Pacer: per-key spacing, pauses, and sharing across threads with their own loops.

Time is virtual everywhere: the injected sleep advances an injected clock, so nothing here
waits for real and nothing depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from flows.pacing import PACER, Pacer
from tests.destination_helpers import fake_pacer

KEY = "slack-webhook:0123456789abcdef"
OTHER = "slack-webhook:fedcba9876543210"


@pytest.mark.anyio
async def test_first_send_goes_at_once_and_the_next_waits_the_interval() -> None:
    pacer, vt = fake_pacer()
    times = []
    for _ in range(3):
        await pacer.wait_turn(KEY, 1.0)
        times.append(vt.now)
    assert times == [1000.0, 1001.0, 1002.0]
    assert vt.sleeps == [1.0, 1.0]


@pytest.mark.anyio
async def test_concurrent_callers_get_distinct_slots() -> None:
    pacer, vt = fake_pacer()
    sent: list[float] = []

    async def caller() -> None:
        await pacer.wait_turn(KEY, 1.0)
        sent.append(vt.now)

    await asyncio.gather(*(caller() for _ in range(4)))
    assert sorted(sent) == [1000.0, 1001.0, 1002.0, 1003.0]


@pytest.mark.anyio
async def test_keys_are_independent_and_idle_time_is_not_banked() -> None:
    pacer, vt = fake_pacer()
    await pacer.wait_turn(KEY, 1.0)
    await pacer.wait_turn(OTHER, 1.0)  # another account: no wait
    assert vt.sleeps == []
    vt.now += 10  # idle for a while
    await pacer.wait_turn(KEY, 1.0)
    await pacer.wait_turn(KEY, 1.0)  # a burst after idling is still spaced
    assert vt.sleeps == [1.0]


@pytest.mark.anyio
async def test_pause_blocks_every_caller_until_it_ends() -> None:
    pacer, vt = fake_pacer()
    pacer.pause(KEY, 30)
    assert pacer.paused_for(KEY) == 30
    assert pacer.paused_for(OTHER) == 0

    times = []
    for _ in range(2):
        await pacer.wait_turn(KEY, 1.0)
        times.append(vt.now)
    assert times == [1030.0, 1031.0]
    assert pacer.paused_for(KEY) == 0


def test_pause_is_honoured_exactly_never_clamped_or_shortened() -> None:
    pacer, vt = fake_pacer()
    pacer.pause(KEY, 7200.5)
    assert pacer.paused_for(KEY) == 7200.5
    pacer.pause(KEY, 5)  # a shorter answer later must not cut the longer pause
    assert pacer.paused_for(KEY) == 7200.5
    vt.now += 7200
    assert pacer.paused_for(KEY) == pytest.approx(0.5)
    pacer.pause(KEY, 0)  # nothing to do, and no error
    assert pacer.paused_for(KEY) == pytest.approx(0.5)


@pytest.mark.anyio
async def test_pause_during_a_wait_applies_to_callers_already_holding_a_slot() -> None:
    pacer, vt = fake_pacer()

    def pause_once(_seconds: float) -> None:
        # While the second caller sleeps towards its slot, a 429 arrives for the key.
        vt.on_sleep = None
        pacer.pause(KEY, 30)

    await pacer.wait_turn(KEY, 1.0)
    vt.on_sleep = pause_once
    await pacer.wait_turn(KEY, 1.0)
    assert [vt.now] == [1030.0]


def test_threads_with_their_own_event_loops_share_one_budget() -> None:
    # Each thread has its own virtual time (thread-local offset over a shared base), so a
    # sleeping thread does not move the others' clocks; slots come from the one shared lock.
    local = threading.local()
    base = 1000.0

    def clock() -> float:
        return base + getattr(local, "offset", 0.0)

    async def sleep(seconds: float) -> None:
        local.waits = [*getattr(local, "waits", []), seconds]
        local.offset = getattr(local, "offset", 0.0) + seconds

    pacer = Pacer(clock=clock, sleep=sleep)
    ready = threading.Barrier(8)
    waited: list[float] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            ready.wait()
            asyncio.run(pacer.wait_turn(KEY, 2.0))
            waited.append(sum(getattr(local, "waits", [])))
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert sorted(waited) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0]


def test_real_sleep_and_the_process_pacer() -> None:
    # The singleton works from fresh loops in two threads (no loop-bound primitives inside).
    assert isinstance(PACER, Pacer)
    results: list[bool] = []

    def worker() -> None:
        asyncio.run(PACER.wait_turn("test-pacing:real", 0.0))
        results.append(True)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == [True, True]


@pytest.mark.anyio
async def test_negative_interval_is_a_caller_bug() -> None:
    pacer, _ = fake_pacer()
    with pytest.raises(ValueError):
        await pacer.wait_turn(KEY, -1.0)


@pytest.mark.anyio
async def test_later_turns_start_after_the_taken_slots_and_are_spaced() -> None:
    pacer, vt = fake_pacer()
    await pacer.wait_turn(KEY, 1.0)  # 1000
    assert not await pacer.wait_turn(KEY, 1.0, max_wait=0.5)  # 1001 is more than 0.5 s away
    assert [pacer.later_turn(KEY, 1.0) for _ in range(3)] == [1.0, 2.0, 3.0]
    assert vt.sleeps == []  # handing back costs no wait
    pacer.pause(KEY, 30)
    assert pacer.later_turn(KEY, 1.0) == 30.0  # never inside a pause
    assert pacer.later_turn(OTHER, 1.0) == 0.0  # another account's schedule


@pytest.mark.anyio
async def test_later_turns_are_not_slots_the_next_inline_caller_still_goes_first() -> None:
    pacer, vt = fake_pacer()
    for _ in range(5):
        pacer.later_turn(KEY, 1.0)
    await pacer.wait_turn(KEY, 1.0)
    assert vt.sleeps == []
