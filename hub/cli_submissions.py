"""`hookhub show`, `resend`, `backfill`, `pause`, `resume`: one submission and its deliveries.

The data layer is hub/spool (detail, actions, backfill); this module reads arguments, loads the
config where names must be checked, and prints. Names that do not exist exit 2 with one line
saying what does.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from hub.cli_admin import open_spool_or_say, when
from hub.config.loader import ConfigError, load_config
from hub.config.models import HubConfig
from hub.spool import actions
from hub.spool.backfill import BackfillCounts, backfill
from hub.spool.detail import SubmissionDetail, SubmissionNotFound, submission_detail
from hub.store import Connection

USAGE = 2
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_instant(text: str, now: float) -> float:
    """'2026-12-01', '2026-12-01T09:30Z' (UTC unless an offset is given), or an age: '7d', '12h'."""
    relative = _RELATIVE.match(text.strip())
    if relative:
        return now - float(relative[1]) * _UNIT[relative[2]]
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (use 2026-12-01, 2026-12-01T09:30Z or an age such as 7d, 12h)"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _config(args: argparse.Namespace, needed: bool) -> HubConfig | None:
    try:
        return load_config(args.config)
    except (ConfigError, OSError) as exc:
        if needed:
            print(f"hookhub {args.command}: cannot load {args.config}: {exc}", file=sys.stderr)
        return None


def cmd_show(args: argparse.Namespace) -> int:
    conn = open_spool_or_say(args)
    if conn is None:
        return 1
    config = _config(args, needed=False)
    row = conn.execute("SELECT source, provider FROM inbox WHERE id=?", (args.id,)).fetchone()
    connector = None
    if row is not None and config is not None:
        from hub.routing.process import connector_for  # imports every connector: only here

        try:
            connector = connector_for(config, row[0], row[1])
        except KeyError:  # a provider this version no longer has: redacted by name patterns only
            connector = None
    try:
        detail = submission_detail(conn, args.id, config, connector)
    except SubmissionNotFound as exc:
        print(f"hookhub show: {exc}", file=sys.stderr)
        return USAGE
    if args.json:
        print(detail.model_dump_json(indent=2))
    else:
        _print_detail(detail, routes_known=config is not None)
    return 0


def _print_detail(d: SubmissionDetail, routes_known: bool) -> None:
    print(f"{d.id}  {d.source} ({d.provider})  event {d.event_id}  received {when(d.received_at)}")
    print(f"state  {d.state}" + (f": {d.error}" if d.error else "") + (f"  ({d.note})" if d.note else ""))
    if d.submission is not None:
        s = d.submission
        print(f"from   {s.get('name') or '-'} <{s.get('email') or '-'}>  form {s.get('form_id') or '-'}")
        for answer in s.get("answers", []):
            print(f"  {answer.get('label') or answer.get('key')}: {answer.get('value')}")
    else:
        print("not normalized yet")
    print("\nroutes")
    if d.routes is None:
        print("  (not judged: " + ("no normalized submission)" if routes_known else "config not loaded)"))
    for r in d.routes or []:
        outcome = f"-> {', '.join(r.destinations) or '(destinations taken by earlier routes)'}"
        print(f"  {r.route}: " + (outcome if r.matched else f"no: {r.why_not}"))
    print("\ndeliveries" + ("" if d.deliveries else "\n  (none)"))
    for v in d.deliveries:
        flags = "".join([" PAUSED" if v.paused else "", f" DISABLED ({v.disabled})" if v.disabled else ""])
        resend = f", resend {v.generation}" if v.generation else ""
        print(f"  {v.destination} (route {v.route}{resend}): {v.status}{flags}")
        if v.remote_id or v.previous_remote_id:
            before = f" (before the resend: {v.previous_remote_id})" if v.previous_remote_id else ""
            print(f"    remote id {v.remote_id or '-'}{before}")
        if v.next_attempt_at is not None:
            print(f"    next attempt {when(v.next_attempt_at)}")
        for a in v.history:
            code = f" HTTP {a.status_code}" if a.status_code else ""
            print(f"    #{a.attempt} {when(a.at)} {a.outcome}{code}" + (f": {a.error}" if a.error else ""))
    raw = d.raw
    print(
        f"\nraw request ({raw.body_bytes} bytes"
        + (f"; redacted: {', '.join(raw.redacted)})" if raw.redacted else ")")
    )
    print(f"  {raw.method} {raw.url}")
    for name, value in raw.headers.items():
        print(f"  {name}: {value}")
    print(f"  {raw.body}")


def _acting(args: argparse.Namespace, act: Callable[[HubConfig, Connection], int]) -> int:
    """Run `act` with the config and the spool; a name that does not exist exits 2, saying so."""
    config = _config(args, needed=True)
    conn = open_spool_or_say(args)
    if config is None or conn is None:
        return 1
    try:
        return act(config, conn)
    except actions.UnknownName as exc:
        print(f"hookhub {args.command}: {exc}", file=sys.stderr)
        return USAGE
    except actions.NothingToResend as exc:
        print(f"hookhub {args.command}: {exc}", file=sys.stderr)
        return 1


def cmd_resend(args: argparse.Namespace) -> int:
    def act(config: HubConfig, conn: Connection) -> int:
        done = actions.resend(conn, args.id, time.time(), args.destination, config.destinations)
        for r in done:
            what = {
                "resend": f"resend #{r.generation}",
                "replay": "dead letter replayed",
                "new": "new delivery",
            }
            print(f"{args.id} -> {r.destination}: {what[r.action]}")
        print("queued; a running `hookhub serve` sends it (`hookhub show ID` follows it)")
        return 0

    return _acting(args, act)


def cmd_backfill(args: argparse.Namespace) -> int:
    config = _config(args, needed=True)
    if config is None:
        return 1
    route = next((r for r in config.routes if r.name == args.route), None)
    if route is None:
        names = ", ".join(r.name for r in config.routes) or "none"
        print(
            f"hookhub backfill: no route named {args.route!r} in {args.config}; routes: {names}",
            file=sys.stderr,
        )
        return USAGE
    conn = open_spool_or_say(args)
    if conn is None:
        return 1
    now = time.time()
    since = parse_instant(args.since, now)
    until = parse_instant(args.until, now) if args.until else None
    counts = backfill(
        conn, route, since, until, now, args.dry_run, _progress() if sys.stderr.isatty() else None
    )
    if sys.stderr.isatty():
        print(file=sys.stderr)
    verb = "would plan" if args.dry_run else "planned"
    planned = ", ".join(f"{d} {n}" for d, n in sorted(counts.planned.items())) or "nothing"
    print(
        f"route {route.name}: {counts.examined} submissions examined, {counts.matched} matched;"
        f" {verb}: {planned}; {counts.existing} already had a delivery (left alone)"
        + (f"; {counts.errors} could not be judged (`when` error)" if counts.errors else "")
    )
    if args.dry_run:
        print("dry run: nothing was changed")
    return 0


def _progress() -> Callable[[BackfillCounts], None]:
    def show(counts: BackfillCounts) -> None:
        planned = sum(counts.planned.values())
        print(
            f"\r{counts.examined} examined, {counts.matched} matched, {planned} planned",
            end="",
            file=sys.stderr,
        )

    return show


def cmd_pause(args: argparse.Namespace) -> int:
    def act(config: HubConfig, conn: Connection) -> int:
        added = actions.pause(conn, args.destination, time.time(), args.reason or "", config.destinations)
        state = "paused" if added else "was already paused"
        print(
            f"{args.destination} {state}: its deliveries wait (no attempts)"
            f" until `hookhub resume {args.destination}`"
        )
        return 0

    return _acting(args, act)


def cmd_resume(args: argparse.Namespace) -> int:
    def act(config: HubConfig, conn: Connection) -> int:
        resumed = actions.resume(conn, args.destination, config.destinations)
        was = "resumed" if resumed.was_paused else "was not paused"
        enabled = f"; enabled again (disabled: {resumed.was_disabled})" if resumed.was_disabled else ""
        print(f"{args.destination} {was}{enabled}")
        if resumed.dead:
            replay = "`hookhub replay --all` (or --id) sends them again"
            print(f"{resumed.dead} dead letters for it stay dead: {replay}")
        return 0

    return _acting(args, act)


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    data_dir_arg: Callable[[argparse.ArgumentParser], None],
    config_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    show = sub.add_parser("show", help="one submission: answers, raw request, routes, every delivery attempt")
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="print it as JSON")
    resend = sub.add_parser("resend", help="send a delivered submission again, or to another destination")
    resend.add_argument("--id", required=True, help="the submission id")
    resend.add_argument(
        "--destination",
        action="append",
        help="where to (repeatable; one it never went to gets a new delivery);"
        " default: everywhere it was delivered",
    )
    fill = sub.add_parser(
        "backfill", help="apply a route to stored submissions (never resends a delivered pair)"
    )
    fill.add_argument("--route", required=True, help="a route name from the config")
    fill.add_argument("--since", required=True, help="2026-12-01, 2026-12-01T09:30Z, or an age: 7d, 12h")
    fill.add_argument("--until", default=None, help="end of the range (excluded); default: now")
    fill.add_argument("--dry-run", action="store_true", help="count what would be planned; change nothing")
    pause = sub.add_parser("pause", help="hold a destination's deliveries (pending, no attempts)")
    pause.add_argument("destination")
    pause.add_argument("--reason", default=None, help="shown in status and the console")
    resume = sub.add_parser(
        "resume", help="let a paused destination's deliveries go; re-enable one a 410 disabled"
    )
    resume.add_argument("destination")
    for parser in (show, resend, fill, pause, resume):
        data_dir_arg(parser)
        config_arg(parser)


HANDLERS = {
    "show": cmd_show,
    "resend": cmd_resend,
    "backfill": cmd_backfill,
    "pause": cmd_pause,
    "resume": cmd_resume,
}
