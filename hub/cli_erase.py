"""`hookhub erase --email ADDRESS | --id ID [--dry-run]`: forget a person (hub/spool/erase.py).

Exit codes: 0 erased (or, with --dry-run, found), 1 nothing found or no spool, 2 usage.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from hub.cli_admin import open_spool_or_say
from hub.spool.erase import ErasureReport, erase

ArgumentAdder = Callable[[argparse.ArgumentParser], None]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], data_dir_arg: ArgumentAdder) -> None:
    parser = sub.add_parser(
        "erase",
        help="remove a person's submissions, raw requests, errors and dead letters from the spool;"
        " list the destinations that received them",
    )
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--email", help="every submission with this address anywhere in it")
    who.add_argument("--id", dest="submission_id", help="one submission id")
    parser.add_argument("--dry-run", action="store_true", help="show what would be erased; change nothing")
    data_dir_arg(parser)


def cmd_erase(args: argparse.Namespace) -> int:
    """Erases from the store HOOKHUB_STORE names (PostgreSQL), else from the data dir's spool."""
    if args.email is not None and "@" not in args.email:
        print(f"hookhub erase: --email {args.email!r} is not an e-mail address", file=sys.stderr)
        return 2
    conn = open_spool_or_say(args)
    if conn is None:
        return 1
    try:
        report = erase(
            conn, email=args.email, submission_id=args.submission_id, now=time.time(), dry_run=args.dry_run
        )
    finally:
        conn.close()
    who = f"id {args.submission_id}" if args.submission_id else "that e-mail address"
    if not report.found:
        print(f"hookhub erase: no stored submission matches {who}; nothing erased")
        return 1
    print("\n".join(describe(report)))
    return 0


def describe(report: ErasureReport) -> list[str]:
    """The lines `erase` prints: what went (or would go), and where the data was sent."""
    verb = "would be erased" if report.dry_run else "erased"
    lines = [f"{len(report.submissions)} submission(s) {verb}:"]
    for item in report.submissions:
        lines.append(f"  {item.id}  source {item.source}, received {_when(item.received_at)}, {item.state}")
        for d in item.deliveries:
            if d.status == "delivered":
                ids = [i for i in (d.remote_id, d.previous_remote_id) if i]
                remote = f", their record id {' and before a resend '.join(ids)}" if ids else ""
                lines.append(f"    sent to {d.destination} on {_when(d.delivered_at)}{remote}")
            else:
                lines.append(f"    {d.destination}: {d.status}, never delivered (removed from the queue)")
    sent = sorted(
        {d.destination for item in report.submissions for d in item.deliveries if d.status == "delivered"}
    )
    if sent:
        lines.append(
            f"hookhub cannot erase what it sent: erase this person in {', '.join(sent)} too"
            " (the dates and record ids above say what to look for)"
        )
    if not report.dry_run:
        lines.append(
            f"scrubbed {report.attempts_scrubbed} attempt error(s),"
            f" {report.alert_texts_scrubbed} quoting text(s);"
            f" removed {report.deliveries_removed} undelivered delivery(ies)"
        )
        if report.store == "sqlite" and not report.wal_checkpointed:
            lines.append(
                "warning: a reader kept the write-ahead log from being emptied; old copies may remain in"
                " spool.db-wal until the hub's next checkpoint: run erase again later to be sure"
            )
        if report.store == "postgresql":
            lines.append(
                "the changed tables were vacuumed; PostgreSQL's WAL, its archive, replicas and backups keep"
                " old copies until they expire (docs/privacy.md)"
                if report.vacuumed
                else "warning: VACUUM could not run (see the log); old row versions stay in PostgreSQL"
                " until autovacuum removes them (docs/privacy.md)"
            )
    return lines


def _when(at: float | None) -> str:
    if at is None:
        return "(unknown)"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
