"""`hookhub migrate`: create or upgrade the store's schema; `--from-sqlite DATA_DIR` moves a spool
into PostgreSQL (hub/store/copy_sqlite.py).

Exit codes: 0 done (or already up to date), 1 refused or failed (the message says why and what
to do), including a copy whose table counts differ between the two sides.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from hub.config.loader import ConfigError, load_config
from hub.spool.lock import DataDirBusy, DataDirLock
from hub.spool.schema import SPOOL_FILE, connect, ensure_schema, recorded_version
from hub.spool.terms import BACKFILL_KEY
from hub.store import PostgresStore, SqliteStore, Store, StoreError, store_from_setting
from hub.store.copy_sqlite import CopyFailed, CopyReport, copy_spool
from hub.store.location import ENV, BadStoreSetting
from hub.store.postgres import schema as pg_schema
from hub.store.postgres.connection import PostgresConnection

ArgumentAdder = Callable[[argparse.ArgumentParser], None]

SEARCH_TERMS_THREAD = "hookhub-search-terms"
"""hub/spool/terms.py's filling thread, started by ensure_schema for a large old spool."""


class MigrateRefused(RuntimeError):
    """Nothing was changed; the message says why and what to do."""


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    data_dir_arg: ArgumentAdder,
    config_arg: ArgumentAdder,
) -> None:
    parser = sub.add_parser(
        "migrate",
        help="create or upgrade the store's schema; --from-sqlite copies a SQLite spool into PostgreSQL",
    )
    config_arg(parser)
    data_dir_arg(parser)
    parser.add_argument(
        "--from-sqlite",
        metavar="DATA_DIR",
        help="copy the spool in this data dir (its hub stopped) into the PostgreSQL store named by"
        f" {ENV} or `store:`; safe to run again after an interruption",
    )


def cmd_migrate(args: argparse.Namespace) -> int:
    try:
        store = _configured_store(args)
        if args.from_sqlite is not None:
            return _from_sqlite(Path(args.from_sqlite), store)
        _migrate(store)
    except (MigrateRefused, CopyFailed, pg_schema.SchemaTooNew, BadStoreSetting) as exc:
        print(f"hookhub migrate: {exc}", file=sys.stderr)
        return 1
    except StoreError as exc:
        print(f"hookhub migrate: {_store_name_of(args)}: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


def _configured_store(args: argparse.Namespace) -> Store:
    """HOOKHUB_STORE wins; else `store:` of the config file; else SQLite in the data dir."""
    data_dir = Path(args.data_dir)
    if os.environ.get(ENV):
        return store_from_setting(None, data_dir)
    config = Path(args.config)
    if not config.exists():
        return store_from_setting(None, data_dir)
    try:
        return store_from_setting(load_config(config).store, data_dir)
    except ConfigError as exc:
        raise MigrateRefused(
            f"{exc}\nfix the config (`hookhub check` shows the problems) or set {ENV}"
        ) from None


def _store_name_of(args: argparse.Namespace) -> str:
    try:
        return _configured_store(args).key
    except (MigrateRefused, BadStoreSetting):
        return "the store"


def _migrate(store: Store) -> None:
    if isinstance(store, PostgresStore):
        conn = store.connect()
        try:
            before = pg_schema.current_version(conn)
            applied = pg_schema.migrate(conn)
        finally:
            conn.close()
        print(f"store {store.key} (PostgreSQL)")
        _say_versions(before, before if not applied else applied[-1])
        return
    if not isinstance(store, SqliteStore):
        raise MigrateRefused(f"store {store.key}: neither SQLite nor PostgreSQL")
    existed = store.file.exists()
    before = _sqlite_version(store.file) if existed else 0
    prepare_sqlite(store)  # refuses a newer spool (SchemaTooNew) before it changes anything
    print(f"store {store.key} (SQLite{'' if existed else ', new'})")
    _say_versions(before, _sqlite_version(store.file))


def _say_versions(before: int, after: int) -> None:
    if before == after:
        print(f"schema version {after}: up to date, nothing to do")
    else:
        print(f"schema version {before or 'none'} -> {after}")


def _sqlite_version(file: Path) -> int:
    conn = connect(file)
    try:
        return recorded_version(conn)
    finally:
        conn.close()


def prepare_sqlite(store: SqliteStore) -> None:
    """ensure_schema, and wait for the search terms it may have started filling in a thread (a
    hub goes on serving meanwhile; this command would exit with the fill half done)."""
    ensure_schema(store.file)
    for thread in threading.enumerate():
        if thread.name == SEARCH_TERMS_THREAD:
            print("filling the search terms of stored submissions (about 5 min per million)", file=sys.stderr)
            thread.join()
    conn = connect(store.file)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key=?", (BACKFILL_KEY,)).fetchone()
    finally:
        conn.close()
    if row is None or row[0] != "done":
        raise MigrateRefused(
            f"{store.file}: the search terms of older submissions are not filled yet (stopped at row"
            f" {row[0] if row else 0}; the warning above says why); run `hookhub migrate` again"
        )


def _from_sqlite(data_dir: Path, target: Store) -> int:
    if not isinstance(target, PostgresStore):
        raise MigrateRefused(
            f"--from-sqlite copies into PostgreSQL, but the configured store is SQLite ({target.key});"
            f" set {ENV} (or `store:` in the config) to the PostgreSQL URL to copy into"
        )
    source = SqliteStore(data_dir / SPOOL_FILE)
    if not source.file.exists():
        raise MigrateRefused(f"no spool at {source.file}: --from-sqlite takes the data dir of a SQLite hub")
    lock = DataDirLock(data_dir)
    try:
        # Held for the whole copy: no hub can start on the spool and change it under the copy.
        lock.acquire(port=0)
    except DataDirBusy as exc:
        raise MigrateRefused(
            f"{exc}: the hub must be stopped before its spool is moved (its claims and in-flight"
            " deliveries would be copied half done)"
        ) from None
    try:
        prepare_sqlite(source)
        target.prepare()
        print(f"copying {source.file} into {target.key}")
        report = _copy(source, target)
    finally:
        lock.release()
    return _report(report, target)


def _copy(source: SqliteStore, target: PostgresStore) -> CopyReport:
    reader = connect(source.file)
    writer = PostgresConnection.open(target.url, application_name="hookhub migrate")
    try:
        return copy_spool(reader, writer, time.time(), _progress_line if sys.stderr.isatty() else None)
    finally:
        if sys.stderr.isatty():
            print(file=sys.stderr)
        writer.close()
        reader.close()


def _progress_line(table: str, done: int, total: int) -> None:
    print(f"\r  {table:<22} {done:>12,} / {total:,}\x1b[K", end="", file=sys.stderr, flush=True)


def _report(report: CopyReport, target: PostgresStore) -> int:
    print(f"{'table':<22} {'sqlite':>12} {'postgresql':>12} {'copied now':>12}")
    for count in report.tables:
        flag = "" if count.matches else "  DIFFERS"
        print(f"{count.table:<22} {count.source:>12,} {count.target:>12,} {count.copied:>12,}{flag}")
    if report.released_submissions or report.released_deliveries:
        print(
            f"{report.released_submissions} submission(s) claimed and {report.released_deliveries}"
            " delivery(ies) in flight in the SQLite spool are pending in PostgreSQL (the hub that held"
            " them is stopped); a delivery that had reached its target goes again with the same"
            " idempotency key"
        )
    print("not copied: leases (the SQLite hub's processes) and that spool's own bookkeeping in meta")
    if report.mismatched:
        names = ", ".join(count.table for count in report.mismatched)
        print(
            f"hookhub migrate: counts differ for {names}: rows in PostgreSQL that the spool does not"
            " have (a hub already ran on it?) or rows PostgreSQL refused; nothing was deleted,"
            " check before switching over",
            file=sys.stderr,
        )
        return 1
    print(
        "done. Next: leave the SQLite hub stopped (its data dir is now a backup); set"
        f" {ENV}={target.key} (with its credentials) or `store:` in connectors.yaml on every machine;"
        " then start the receivers (`hookhub serve --no-dispatch`) and workers (`hookhub worker`),"
        " or one `hookhub serve`"
    )
    return 0
