"""Rate budgets held once for a whole cluster: one row per budget key in PostgreSQL's `rate_budgets`.

`StorePacer` has `flows.pacing.Pacer`'s interface, so destinations do not know which one they
got; `pacer_for(store)` picks it: the in-memory `PACER` for the SQLite all-in-one hub (one
process holds every budget), a `StorePacer` for PostgreSQL, where several `hookhub worker`
processes, on several hosts, send to the same Slack channel or CRM token.

Each key is a GCRA schedule (generic cell rate algorithm, flows/budget_rows.py): taking a turn
is one upsert that moves the row's `tat` one interval past max(tat, now, paused_until) and
returns it: the row lock orders concurrent callers, so no two get the same slot, and idle time
is not banked (a burst after idling is still spaced).

Times are the injected clock's wall-clock seconds, written into the shared row by every host:
the hosts of a cluster must run NTP, as a skew between two of them shrinks or widens the gap
between their sends by that skew.

Database round trips run on the pacer's own few threads, each with its own connection: delivery
tasks call from several threads, each with its own event loop, and none of those loops may wait
on the database. `pause` and `observe` are synchronous in the interface, so they update this
process's view at once and write to the row in the background; `paused_for` reads that view,
which a watcher thread refreshes from the table every `watch_every` seconds (a pause another
worker set is seen here within that time; a turn taken through the row honours it at once).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from flows import budget_rows
from flows.budget_rows import Row
from flows.pacing import PACER, Clock, Pacer, Sleep
from hub.store.connection import Connection, StoreError
from hub.store.location import Store

log = logging.getLogger("hookhub.pacing")

T = TypeVar("T")


class StorePacer:
    """`flows.pacing.Pacer`'s interface over the store's `rate_budgets` rows (PostgreSQL).

    Rolling budgets (`acquire`: at most `limit` sends per `window`) are GCRA schedules with
    interval window/limit and no burst: sends are spaced evenly, so no window of that length
    ever holds more than `limit` of them, as the target counts. (A GCRA burst of `limit`, the
    usual leaky-bucket setting, would let up to 2 * limit - 1 through in one window after an
    idle spell, and the target would answer 429.) The sustained rate is the same as the
    in-memory pacer's; what is lost is only the burst after idling.

    When the store cannot be reached, a turn falls back to an in-memory `Pacer` of this process
    (logged once per outage): sends stay spaced per process, and the ledger's own errors will
    be what the admin sees.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        threads: int = 2,
        watch_every: float | None = 1.0,
    ) -> None:
        if store.dialect != "postgresql":
            raise ValueError(f"a StorePacer needs a PostgreSQL store, not {store.dialect}; use PACER")
        self._store = store
        self._clock = clock
        self._sleep = sleep
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hookhub-budgets")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Connection] = []
        self._writes: set[Future[None]] = set()
        self._paused_until: dict[str, float] = {}
        self._tat: dict[str, float] = {}
        self._windows: dict[str, tuple[int, float]] = {}
        self._fallback = Pacer(clock=clock, sleep=sleep)
        self._unavailable = False
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        if watch_every is not None:
            self._watcher = threading.Thread(
                target=self._watch, args=(watch_every,), name="hookhub-budgets-watch", daemon=True
            )
            self._watcher.start()

    # -- turns ----------------------------------------------------------------------------------

    async def wait_turn(self, key: str, min_interval: float, max_wait: float | None = None) -> bool:
        """Return True when the caller may send on `key`; the slot is taken when this returns.

        False, taking nothing, when the turn would start more than `max_wait` seconds from now
        (a long pause, or a deep queue of other workers' turns): the caller can defer its work.
        """
        if min_interval < 0:
            raise ValueError("min_interval must not be negative")
        tolerance = 0.0 if min_interval > 0 else math.inf
        alone = self._fallback
        return await self._turn(
            key, min_interval, tolerance, max_wait, lambda: alone.wait_turn(key, min_interval, max_wait)
        )

    def later_turn(self, key: str, min_interval: float) -> float:
        """`Pacer.later_turn`, from this process's own schedule: a time to come back, not a slot
        (the turn is still taken through the row then), so each worker spreading its own
        deferrals is enough."""
        return max(self._fallback.later_turn(key, min_interval), self.paused_for(key))

    async def acquire(self, key: str, limit: int, window: float, max_wait: float | None = None) -> bool:
        """Wait until one more send on `key` fits `limit` sends per `window` seconds and `key` is
        not paused; True once the send is counted, False (nothing counted) when that is more than
        `max_wait` away. The target's own numbers, once `observe` learned them, replace these."""
        if limit < 1 or window <= 0:
            raise ValueError("a budget needs limit >= 1 and window > 0")
        with self._lock:
            limit, window = self._windows.setdefault(key, (limit, window))
        alone = self._fallback
        return await self._turn(
            key, window / limit, 0.0, max_wait, lambda: alone.acquire(key, limit, window, max_wait)
        )

    async def _turn(
        self,
        key: str,
        interval: float,
        tolerance: float,
        max_wait: float | None,
        fallback: Callable[[], Awaitable[bool]],
    ) -> bool:
        spaced = tolerance == 0.0
        while True:
            now = self._clock()
            paused = max(0.0, self._known_pause(key))
            if max_wait is not None and paused - now > max_wait:
                return False
            # A spaced turn is taken only once it is due, and starts then: slots follow the times
            # they were really taken. Reserving ahead and sleeping toward the slot let a caller
            # that woke late (50-160 ms on this loaded machine) post 0.95 s after the previous one
            # and collect 429s from a target that counts strictly (bench/scale.py --slack).
            horizon = now if spaced else math.inf if max_wait is None else now + max_wait
            try:
                start = await self._in_thread(self._take, key, interval, tolerance, now, paused, horizon)
            except StoreError as exc:
                self._store_failed("take a turn", exc)
                return await fallback()
            if start is None and not spaced:
                return False
            if start is None:  # not due yet: wait until it is (the row read back says when)
                due = self._due(key)
                if max_wait is not None and due - now > max_wait:
                    return False
                await self._sleep(max(0.0, due - self._clock()))
                continue
            wait = start - self._clock()
            if wait > 0:
                await self._sleep(wait)
            # A pause that arrived while this caller waited (a 429 here, or one the watcher saw)
            # applies to its slot too: it takes a new one after the pause.
            if self._known_pause(key) <= self._clock():
                return True

    def _due(self, key: str) -> float:
        with self._lock:
            return max(self._tat.get(key, -math.inf), self._paused_until.get(key, -math.inf))

    def _take(
        self, key: str, interval: float, tolerance: float, now: float, paused: float, horizon: float
    ) -> float | None:
        """The start of the slot taken on `key`, or None (nothing taken) when it lies past `horizon`."""
        taken = self._on_connection(budget_rows.take, key, interval, tolerance, now, paused, horizon)
        if taken is None:
            self._learn(key, self._on_connection(budget_rows.read, key))
            return None
        start, row = taken
        self._learn(key, row)
        return start

    # -- pauses ---------------------------------------------------------------------------------

    def pause(self, key: str, seconds: float) -> None:
        """Nobody in the cluster sends on `key` for `seconds` from now; honoured exactly, and a
        shorter pause never cuts a longer one. Seen here at once; written to the row in the
        background (the next turn taken here carries it too, should that write fail)."""
        if seconds <= 0:
            return
        now = self._clock()
        until = now + seconds
        with self._lock:
            if until > self._paused_until.get(key, -math.inf):
                self._paused_until[key] = until
        log.info("pacing key paused", extra={"pacing_key": key, "pause_seconds": seconds})
        self._in_background("record a pause", self._write_pause, key, now, until)

    def _write_pause(self, key: str, now: float, until: float) -> None:
        self._learn(key, self._on_connection(budget_rows.record_pause, key, now, until))

    def paused_for(self, key: str) -> float:
        """Seconds until `key` may be used again because of a pause (0 when not paused), as this
        process knows it: its own pauses, the rows its turns read, and the watcher's last look."""
        return max(0.0, self._known_pause(key) - self._clock())

    def _known_pause(self, key: str) -> float:
        with self._lock:
            return self._paused_until.get(key, -math.inf)

    def refresh_pauses(self) -> None:
        """Read every pause in force from the table (what the watcher thread does periodically)."""
        for key, until in self._on_connection(budget_rows.active_pauses, self._clock()):
            with self._lock:
                if until > self._paused_until.get(key, -math.inf):
                    self._paused_until[key] = until

    def _watch(self, every: float) -> None:
        # The look runs on the pacer's own threads, so the watcher holds no connection of its own.
        while not self._stop.wait(every):
            try:
                self._executor.submit(self.refresh_pauses).result()
            except StoreError as exc:
                self._store_failed("read the pauses", exc)
            except RuntimeError:  # closed meanwhile
                return

    # -- what the target says -------------------------------------------------------------------

    def observe(
        self, key: str, remaining: int, limit: int | None = None, window: float | None = None
    ) -> None:
        """The target says `remaining` sends are left in its window for `key` (and, when given,
        its limit and window, which replace the caller's defaults for later `acquire`s).

        Sends the target counted beyond what this cluster can have made in the window (other
        apps on the same token) move the key's schedule on as if made now. The cluster's own
        sends are counted as many as its schedule allows, so this tightens only for usage that
        cannot be its own; a 429's pause remains the backstop.
        """
        with self._lock:
            known = self._windows.get(key)
            if known is None and (limit is None or window is None):
                return
            current_limit, current_window = known if known is not None else (limit or 1, window or 1.0)
            if limit is not None and limit >= 1:
                current_limit = limit
            if window is not None and window > 0:
                current_window = window
            self._windows[key] = (current_limit, current_window)
        usage = (key, self._clock(), current_limit, current_window, remaining)
        self._in_background("record the target's budget", self._write_usage, *usage)

    def _write_usage(self, key: str, now: float, limit: int, window: float, remaining: int) -> None:
        self._learn(key, self._on_connection(budget_rows.record_usage, key, now, limit, window, remaining))

    def budget_left(self, key: str) -> int | None:
        """Sends the key's schedule leaves in the next window, as this process last saw the row
        (None when no budget is known for `key` yet); other workers' turns since are not in it."""
        with self._lock:
            budget = self._windows.get(key)
            tat = self._tat.get(key)
        if budget is None:
            return None
        limit, window = budget
        ahead = 0.0 if tat is None else max(0.0, tat - self._clock())
        return max(0, limit - math.ceil(ahead / (window / limit) - 1e-9))

    # -- plumbing -------------------------------------------------------------------------------

    def _learn(self, key: str, row: Row | None) -> None:
        if row is None:
            return
        tat, paused_until = row
        with self._lock:
            self._tat[key] = tat
            if paused_until > self._paused_until.get(key, -math.inf):
                self._paused_until[key] = paused_until
            was_unavailable, self._unavailable = self._unavailable, False
        if was_unavailable:
            log.info("rate budgets are held in the store again")

    def _on_connection(self, statement: Callable[..., T], *args: Any) -> T:
        """`statement(connection, *args)` on this thread's connection; a failed connection is
        dropped, so the next call opens a new one."""
        conn: Connection | None = getattr(self._local, "conn", None)
        fresh = conn is None
        if conn is None:
            conn = self._local.conn = self._store.connect(dedicated=True)
            with self._lock:
                self._connections.append(conn)
        try:
            if fresh:
                # Budgets are soft state: a turn lost in a database crash costs at most one slot
                # given twice (answered, if at all, by the target's 429 and a pause), while waiting
                # for each turn's WAL flush took ~6 ms instead of ~1 ms here, with the key's row
                # locked throughout. The ledger's own connections keep full durability.
                conn.execute("SET synchronous_commit = off")
            return statement(conn, *args)
        except StoreError:
            self._local.conn = None
            with self._lock:
                self._connections.remove(conn)
            conn.close()
            raise

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _in_background(self, what: str, fn: Callable[..., None], *args: Any) -> None:
        def done(future: Future[None]) -> None:
            with self._lock:
                self._writes.discard(future)
            exc = future.exception()
            if isinstance(exc, StoreError):
                self._store_failed(what, exc)
            elif exc is not None:
                log.error("rate budget write failed", exc_info=exc, extra={"action": what})

        try:
            future = self._executor.submit(fn, *args)
        except RuntimeError:  # closed: this process is stopping and keeps only its own view
            log.debug("rate budget write skipped after close", extra={"action": what})
            return
        with self._lock:
            self._writes.add(future)
        future.add_done_callback(done)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait (blocking: not from an event loop) until the pauses and observations asked for
        so far are in the table, or `timeout` seconds."""
        with self._lock:
            pending = set(self._writes)
        wait(pending, timeout=timeout)

    def _store_failed(self, what: str, exc: Exception) -> None:
        with self._lock:
            first, self._unavailable = not self._unavailable, True
        if first:
            log.warning(
                "rate budgets cannot be reached in the store; this process paces on its own until they can",
                extra={"action": what, "error": type(exc).__name__, "store": self._store.key},
            )

    def close(self) -> None:
        """Finish the writes already asked for (pauses, observations), then close the connections."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
        self._executor.shutdown(wait=True)
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()


_pacers: dict[tuple[int, str], StorePacer] = {}
_pacers_lock = threading.Lock()


def pacer_for(store: Store) -> Pacer | StorePacer:
    """The pacer a delivery on `store` shares with the rest of its hub: the process-wide `PACER`
    on SQLite (one process is the whole hub), else this process's `StorePacer` of that database
    (one per process: a forked child opens its own threads and connections)."""
    if store.dialect == "sqlite":
        return PACER
    with _pacers_lock:
        found = _pacers.get((os.getpid(), store.key))
        if found is None:
            found = _pacers[(os.getpid(), store.key)] = StorePacer(store)
        return found


def close_pacers() -> None:
    """Close this process's store pacers (their threads and connections): for a process that
    stops its hub and goes on, such as a test session; `pacer_for` opens new ones if asked again."""
    with _pacers_lock:
        mine = [key for key in _pacers if key[0] == os.getpid()]
        closing = [_pacers.pop(key) for key in mine]
    for pacer in closing:
        pacer.close()
