"""`hookhub status`, `hookhub deadletters`, `hookhub replay`: see and redo what happened.

`status` and `deadletters` print JSON with --json (the models in hub/spool/report.py).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import TypeAdapter

from hub.config.loader import ConfigError, load_config
from hub.metrics.live import running_hub
from hub.reconcile import state as reconcile_state
from hub.spool import actions, report
from hub.spool.routing_store import load_inbox
from hub.spool.transactions import open_spool
from hub.store import Connection, StoreError
from hub.store.location import Store, store_from_setting

INBOX_COLUMNS = ("pending", "claimed", "routed", "done", "failed", "skipped")
DELIVERY_COLUMNS = ("pending", "sending", "retrying", "delivered", "dead")


def store_of(args: argparse.Namespace) -> Store:
    """The store HOOKHUB_STORE or the config's `store:` names (the SQLite spool of --data-dir by
    default); a config that does not load names none."""
    setting = None
    config = getattr(args, "config", None)
    if config is not None and Path(config).is_file():
        with contextlib.suppress(ConfigError, OSError):
            setting = load_config(Path(config)).store
    return store_from_setting(setting, Path(args.data_dir))


def open_spool_or_say(args: argparse.Namespace) -> Connection | None:
    """The store's connection, or None after saying on stderr that there is no spool or no server."""
    store = store_of(args)
    if store.path is not None and not store.path.exists():
        print(
            f"hookhub: no spool at {store.path} (has `hookhub serve --data-dir {args.data_dir}` run yet?)",
            file=sys.stderr,
        )
        return None
    try:
        return open_spool(store)
    except StoreError as exc:
        from hub.cli_worker import unreachable

        print(f"hookhub: {unreachable(store, exc)}", file=sys.stderr)
        return None


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[str, dict[str, int]]]) -> None:
    width = max([len(title), *(len(name) for name, _ in rows)])
    print(f"{title:<{width}}  " + "  ".join(f"{c:>9}" for c in columns))
    for name, counts in rows:
        print(f"{name:<{width}}  " + "  ".join(f"{counts.get(c, 0):>9}" for c in columns))
    if not rows:
        print("(none yet)")


def cmd_status(args: argparse.Namespace) -> int:
    conn = open_spool_or_say(args)
    if conn is None:
        return 1
    if args.json:
        live = running_hub(Path(args.data_dir))
        hub = None if live is None else {"pid": live.pid, "port": live.port, "delivery": live.delivery}
        found = report.status_report(conn, time.time())
        print(found.model_copy(update={"hub": hub, "store": store_of(args).key}).model_dump_json(indent=2))
        return 0
    sources = report.source_status(conn)
    accepted = sum(n for _, counts in sources for n in counts.values())
    print(f"{accepted} webhooks stored in {store_of(args).key}\n")
    _table("source", INBOX_COLUMNS, sources)
    print()
    _table("destination", DELIVERY_COLUMNS, report.destination_status(conn))
    print()
    _delivery(conn, Path(args.data_dir), time.time())
    _reconciliation(conn)
    return 0


def _reconciliation(conn: Connection) -> None:
    """Each reconciled source's last run and webhook (README "Missed webhooks"), if any."""
    states = reconcile_state.read_all(conn)
    if not states:
        return
    print("\nreconciliation")
    for source, row in states.items():
        if row.last_run_at is None:
            last = "not run yet"
        elif row.last_outcome == "ok":
            last = f"last run {when(row.last_run_at)}: {row.last_listed} listed, {row.last_missing} missing"
        else:
            outcome = (row.last_outcome or "failed").upper()
            last = f"last run {when(row.last_run_at)} {outcome}: {row.last_error}"
        print(f"  {source}  {last}; {row.reconciled} reconciled, {row.imported} imported so far")
        if row.webhook_state is not None:
            print(f"  {' ' * len(source)}  webhook {row.webhook_state}: {row.webhook_detail}")


def _delivery(conn: Connection, data_dir: Path, now: float) -> None:
    """Whether delivery works: the running hub's view (if one runs), then what the spool holds."""
    print("delivery")
    hub = running_hub(data_dir)
    for live in report.live_owners(conn, now):
        port = f", port {live.port}" if live.port else ""
        print(f"  worker     {live.host} pid {live.pid}{port}: lease held ({live.owner})")
    if hub is None:
        if conn.dialect == "sqlite":  # on PostgreSQL, the workers above are the dispatchers
            print("  hub        not running on this data dir: Prefect and the dispatcher are not known")
    elif hub.delivery is None:
        print(f"  hub        pid {hub.pid}, port {hub.port}: /readyz did not answer ({hub.error})")
    else:
        print(f"  hub        pid {hub.pid}, port {hub.port}: {_health(hub.delivery)}")
    count, oldest = report.oldest_pending(conn)
    waiting = f", the oldest for {_age(now - oldest)}" if oldest is not None else ""
    print(f"  pending    {count} submissions not routed yet{waiting}")
    for name, since, reason in actions.paused(conn):
        print(f"  paused     {name} since {when(since)}: {reason}; `hookhub resume {name}` lets it go")
    for name, since, reason in report.disabled(conn):
        print(f"  disabled   {name} since {when(since)}: {reason}; `hookhub replay` enables it again")
    for r in report.retrying(conn):
        error = r.last_error or "(no reason recorded)"
        code = f"HTTP {r.last_status_code}: " if r.last_status_code and "HTTP" not in error else ""
        print(f"  retrying   {r.destination}: {r.count}, next attempt {when(r.next_attempt_at)}")
        print(f"             last: {code}{error}")


def _health(delivery: dict[str, object]) -> str:
    if not delivery.get("dispatching"):
        return "not dispatching (--no-dispatch): another process delivers"
    dispatcher = "dispatcher alive" if delivery.get("dispatcher_alive") else "dispatcher NOT running"
    reachable = delivery.get("prefect_reachable")
    if reachable is None:
        prefect = "Prefect not checked yet"
    elif reachable:
        prefect = "Prefect reachable"
    else:
        error = delivery.get("prefect_error") or "no answer"
        prefect = f"Prefect UNREACHABLE ({error}): webhooks are kept and delivered once it answers"
    return f"{dispatcher}, {prefect}"


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def when(at: float) -> str:
    return datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


_ROUTE_FAILED = re.compile(r"route '([^']+)': (?:cannot evaluate|`when` failed)")


def _print_letter(letter: report.DeadLetter) -> None:
    if letter.destination is not None:
        target = letter.destination
    elif routes := _ROUTE_FAILED.findall(letter.reason):
        target = f"route {', '.join(dict.fromkeys(routes))} (its `when` could not be judged)"
    else:
        target = "(not normalized or not routed)"
    code = f" HTTP {letter.last_status_code}" if letter.last_status_code else ""
    tries = f", {letter.attempts} attempts" if letter.attempts else ""
    print(f"{letter.inbox_id}  {letter.source} -> {target}  [{when(letter.at)}{code}{tries}]")
    print(f"    {letter.reason}")
    if letter.delivered_to:
        print(f"    delivered all the same by its other routes to: {', '.join(letter.delivered_to)}")


def _spool_with_known_names(args: argparse.Namespace, command: str) -> Connection | int:
    """The spool, or the exit code when there is none (1) or `args` names what does not exist (2)."""
    conn = open_spool_or_say(args)
    if conn is None:
        return 1
    unknown = unknown_names(conn, args)
    if unknown:
        print(f"hookhub {command}: {unknown}", file=sys.stderr)
        return 2
    return conn


def cmd_deadletters(args: argparse.Namespace) -> int:
    conn = _spool_with_known_names(args, "deadletters")
    if isinstance(conn, int):
        return conn
    letters = report.dead_letters(conn, source=args.source)
    if args.json:
        print(TypeAdapter(list[report.DeadLetter]).dump_json(letters, indent=2).decode())
        return 0
    for letter in letters:
        _print_letter(letter)
    print(f"{len(letters)} dead letters" + ("; `hookhub replay --all` puts them back" if letters else ""))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    if not (args.id or args.source or args.all):
        print(
            "hookhub replay: say what to replay: --id ID (repeatable), --source SOURCE or --all",
            file=sys.stderr,
        )
        return 2
    conn = _spool_with_known_names(args, "replay")
    if isinstance(conn, int):
        return conn
    letters = report.dead_letters(conn, source=args.source, ids=args.id or None)
    if not letters:
        print("nothing to replay: no dead letters match")
        return 0
    if args.dry_run:
        _dry_run(conn, args, letters)
        return 0
    count = report.replay(conn, letters, time.time())
    print(f"replaying {count} dead letters; a running `hookhub serve` delivers them")
    if args.wait:
        return _wait(conn, sorted({letter.inbox_id for letter in letters}), args.wait)
    return 0


def unknown_names(conn: Connection, args: argparse.Namespace) -> str | None:
    """What is wrong with --source / --id if they name nothing: a source neither in the spool nor
    in the config, an id not in the spool (index probes only)."""
    source = getattr(args, "source", None)
    if source and not report.source_exists(conn, source):
        try:
            configured = sorted(load_config(args.config).sources)
        except (ConfigError, OSError):
            configured = []
        if source not in configured:
            listed = ", ".join(configured) or "none configured"
            return (
                f"no source named {source!r}: nothing stored from it and not in {args.config}"
                f" (sources: {listed})"
            )
    for inbox_id in getattr(args, "id", None) or []:
        if conn.execute("SELECT 1 FROM inbox WHERE id=?", (inbox_id,)).fetchone() is None:
            return f"no submission with id {inbox_id!r} (`hookhub deadletters` lists the dead letters' ids)"
    return None


def _dry_run(conn: Connection, args: argparse.Namespace, letters: list[report.DeadLetter]) -> None:
    from hub.routing.process import route_rows

    try:
        config = load_config(args.config)
    except (ConfigError, OSError) as exc:
        print(f"(cannot load {args.config} to show routing: {exc})")
        config = None
    for letter in letters:
        if letter.destination is not None:
            print(f"would send {letter.inbox_id} ({letter.source}) to {letter.destination} again")
            continue
        if config is None:
            print(f"would normalize and route {letter.inbox_id} ({letter.source}) again")
            continue
        routed, failed = route_rows(config, load_inbox(conn, [letter.inbox_id]))
        targets = (
            ", ".join(p.destination for p in routed.get(letter.inbox_id, ("", []))[1]) or "no destination"
        )
        outcome = f"; still failing: {failed[letter.inbox_id]}" if letter.inbox_id in failed else ""
        print(f"would normalize and route {letter.inbox_id} ({letter.source}) -> {targets}{outcome}")
    print(f"dry run: {len(letters)} dead letters would be replayed; nothing was changed")


def _wait(conn: Connection, ids: list[str], timeout: float) -> int:
    """Show progress until every replayed submission is settled again (or the timeout)."""
    deadline = time.monotonic() + timeout
    marks = ",".join("?" * len(ids))
    while True:
        states = dict(
            conn.execute(
                f"SELECT state, count(*) FROM inbox WHERE id IN ({marks}) GROUP BY state", ids
            ).fetchall()
        )
        settled = states.get("done", 0) + states.get("failed", 0)
        print(
            f"\r{settled}/{len(ids)} settled "
            f"({states.get('done', 0)} done, {states.get('failed', 0)} failed)",
            end="",
            flush=True,
        )
        if settled == len(ids):
            print()
            return 0 if not states.get("failed") else 1
        if time.monotonic() > deadline:
            print("\nhookhub replay: still in progress; `hookhub status` shows where it is", file=sys.stderr)
            return 1
        time.sleep(0.5)


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    data_dir_arg: Callable[[argparse.ArgumentParser], None],
    config_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    status = sub.add_parser(
        "status",
        help="counts per source and destination; whether delivery works (Prefect, dispatcher, disabled"
        " destinations, retries)",
    )
    status.add_argument("--json", action="store_true", help="print it as JSON")
    data_dir_arg(status)
    config_arg(status)

    dead = sub.add_parser("deadletters", help="list what failed for good, with reasons")
    dead.add_argument("--source", default=None)
    dead.add_argument("--json", action="store_true", help="print them as JSON")
    data_dir_arg(dead)
    config_arg(dead)

    replay = sub.add_parser("replay", help="put dead letters back in the queue")
    replay.add_argument("--id", action="append", help="a submission id (repeatable)")
    replay.add_argument("--source", default=None, help="every dead letter of this source")
    replay.add_argument("--all", action="store_true", help="every dead letter")
    replay.add_argument(
        "--dry-run", action="store_true", help="show what would be sent where; change nothing"
    )
    replay.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="show progress until the replayed submissions settle (at most SECONDS)",
    )
    data_dir_arg(replay)
    config_arg(replay)


HANDLERS = {"status": cmd_status, "deadletters": cmd_deadletters, "replay": cmd_replay}
