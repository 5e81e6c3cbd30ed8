"""The PostgreSQL schema, as numbered migrations applied once each under an advisory lock.

The tables and columns are SQLite's (hub/spool/schema.py) with PostgreSQL's types: times are
unix seconds in `double precision`, as the ledger computes them; `submission` is `json` so
that `submission ->> 'email'` reads the same on both engines; counters stay integers so
that `firing = 1` compares alike. A new migration is appended, never edited: a database
records every version it ran in `schema_migrations`.
"""

from __future__ import annotations

import contextlib
import time

import psycopg

from hub.store.connection import Connection

LOCK_KEY = 7_140_351_201
"""pg_advisory_xact_lock key: two processes starting at once (receivers behind one balancer)
take turns, and the second finds the work done."""

MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "the spool, ledger, alerts and console tables of hookhub 0.1",
        (
            """CREATE TABLE inbox (
                id text PRIMARY KEY, received_at double precision NOT NULL, source text NOT NULL,
                provider text NOT NULL, event_id text NOT NULL, kind text NOT NULL, note text,
                method text, url text, headers text, body bytea NOT NULL,
                state text NOT NULL DEFAULT 'pending', redeliveries integer DEFAULT 0,
                claimed_at double precision, claimed_by text, error text, submission json,
                not_before double precision, fetch_attempts integer DEFAULT 0,
                updated_at double precision, flow_failures integer NOT NULL DEFAULT 0,
                retry_group integer)""",
            "CREATE UNIQUE INDEX inbox_dedupe ON inbox (source, event_id)",
            "CREATE INDEX inbox_by_state ON inbox (state, received_at)",
            "CREATE INDEX inbox_by_time ON inbox (received_at, id)",
            "CREATE INDEX inbox_by_source_time ON inbox (source, received_at, id)",
            "CREATE INDEX inbox_by_event ON inbox (event_id, received_at, id)",
            "CREATE TABLE meta (key text PRIMARY KEY, value text)",
            """CREATE TABLE deliveries (
                inbox_id text NOT NULL REFERENCES inbox (id), destination text NOT NULL, route text,
                status text NOT NULL DEFAULT 'pending', attempts integer NOT NULL DEFAULT 0,
                first_attempt_at double precision, last_attempt_at double precision,
                next_attempt_at double precision NOT NULL, last_status_code integer,
                last_error text, remote_id text, delivered_at double precision,
                created_at double precision NOT NULL, updated_at double precision,
                flow_failures integer NOT NULL DEFAULT 0, retry_group integer, claimed_by text,
                generation integer NOT NULL DEFAULT 0, previous_remote_id text,
                PRIMARY KEY (inbox_id, destination))""",
            "CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at)",
            "CREATE INDEX deliveries_open ON deliveries (status, destination, next_attempt_at)"
            " WHERE status <> 'delivered'",
            "CREATE INDEX deliveries_by_owner ON deliveries (claimed_by) WHERE status = 'sending'",
            """CREATE TABLE attempts (
                inbox_id text NOT NULL, destination text NOT NULL, attempt integer NOT NULL,
                at double precision, outcome text, status_code integer, error text,
                retry_after double precision, generation integer NOT NULL DEFAULT 0,
                PRIMARY KEY (inbox_id, destination, attempt))""",
            "CREATE TABLE disabled_destinations (destination text PRIMARY KEY, since double precision,"
            " reason text)",
            "CREATE TABLE paused_destinations (destination text PRIMARY KEY, since double precision,"
            " reason text)",
            """CREATE TABLE delivery_counters (destination text NOT NULL, name text NOT NULL,
                value double precision NOT NULL DEFAULT 0, PRIMARY KEY (destination, name))""",
            """CREATE TABLE leases (owner text PRIMARY KEY, pid integer NOT NULL, host text NOT NULL,
                port integer, started_at double precision, expires_at double precision NOT NULL)""",
            # SQLite's trigger of the same name: a delivery put in `sending` takes the owner of its
            # claimed submission, if it has one, else keeps the owner the UPDATE set.
            """CREATE FUNCTION deliveries_claim_owner() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                  NEW.claimed_by := coalesce(
                    (SELECT claimed_by FROM inbox WHERE id = NEW.inbox_id AND state = 'claimed'),
                    NEW.claimed_by);
                  RETURN NEW;
                END $$""",
            """CREATE TRIGGER deliveries_claim_owner BEFORE UPDATE OF status ON deliveries
                FOR EACH ROW WHEN (NEW.status = 'sending' AND OLD.status <> 'sending')
                EXECUTE FUNCTION deliveries_claim_owner()""",
            """CREATE TABLE submission_terms (kind text NOT NULL, value text NOT NULL,
                received_at double precision NOT NULL, inbox_id text NOT NULL, source text,
                PRIMARY KEY (kind, value, received_at, inbox_id))""",
            "CREATE INDEX submission_terms_by_id ON submission_terms (inbox_id)",
            """CREATE TABLE alert_state (rule text NOT NULL, key text NOT NULL,
                firing integer NOT NULL DEFAULT 0, since double precision, last_sent_at double precision,
                last_seen_at double precision, pending integer NOT NULL DEFAULT 0,
                pending_since double precision, reasons text NOT NULL DEFAULT '{}',
                sources text NOT NULL DEFAULT '[]', PRIMARY KEY (rule, key))""",
            "CREATE TABLE alert_watermarks (name text PRIMARY KEY, value double precision NOT NULL)",
            """CREATE TABLE alert_outbox (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                rule text NOT NULL, key text NOT NULL, destination text NOT NULL, alert text NOT NULL,
                status text NOT NULL DEFAULT 'owed', created_at double precision NOT NULL,
                attempts integer NOT NULL DEFAULT 0, next_attempt_at double precision NOT NULL,
                last_error text, sent_at double precision)""",
            "CREATE INDEX alert_outbox_owed ON alert_outbox (status, next_attempt_at)",
            "CREATE INDEX alert_attempts_by_destination ON attempts (destination, at)",
            "CREATE INDEX alert_inbox_by_source ON inbox (source, received_at)",
            "CREATE INDEX alert_dead_by_time ON deliveries (updated_at) WHERE status = 'dead'",
            # SQLite's names for what PostgreSQL spells otherwise, so one statement serves both.
            "CREATE FUNCTION instr(text, text) RETURNS integer LANGUAGE sql IMMUTABLE"
            " AS 'SELECT strpos($1, $2)'",
            # One row per budget key (a Slack channel, a CRM token): the whole cluster's pacing.
            """CREATE TABLE rate_budgets (key text PRIMARY KEY, tat double precision NOT NULL,
                paused_until double precision NOT NULL DEFAULT 0)""",
        ),
    ),
    (
        2,
        "one holder per cluster for the upkeep (role_leases); retention's index of kept raw bodies",
        (
            # hub/roles.py: the maintenance role, taken when free or expired.
            """CREATE TABLE role_leases (name text PRIMARY KEY, holder text NOT NULL,
                expires_at double precision NOT NULL)""",
            # hub/spool/retention.py: the raw bodies a purge still has to empty, by source and age.
            # Built inside the migration's transaction, which holds off inserts while it runs:
            # run `hookhub migrate` before starting receivers of the new version.
            "CREATE INDEX retention_raw_kept ON inbox (source, received_at) WHERE length(body) > 0",
        ),
    ),
    (
        3,
        "the response identity (inbox.response_key) and reconcile_state, for reconciliation",
        (
            # hub/spool/schema.py's _ensure_reconciliation, in PostgreSQL's types. Adding a nullable
            # column rewrites nothing; the index is built under the migration's lock, as above.
            "ALTER TABLE inbox ADD COLUMN response_key text",
            "CREATE UNIQUE INDEX inbox_response ON inbox (source, response_key)"
            " WHERE response_key IS NOT NULL",
            """CREATE TABLE reconcile_state (source text PRIMARY KEY, watermark double precision,
                last_run_at double precision, last_outcome text, last_error text,
                last_listed integer NOT NULL DEFAULT 0, last_missing integer NOT NULL DEFAULT 0,
                reconciled integer NOT NULL DEFAULT 0, imported integer NOT NULL DEFAULT 0,
                webhook_state text, webhook_detail text, webhook_checked_at double precision)""",
        ),
    ),
)

LATEST = MIGRATIONS[-1][0]


class SchemaTooNew(Exception):
    """The database was migrated by a newer hookhub than this one."""


def current_version(conn: Connection) -> int:
    found = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()[0]
    if not found:
        return 0
    version = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]
    return int(version)


def migrate(conn: Connection, now: float | None = None) -> list[int]:
    """Apply the migrations this database has not run; returns the versions applied.

    One transaction holds them all, with the advisory lock: a failed migration leaves the
    database as it was, and concurrent starts do it once.
    """
    applied: list[int] = []
    at = time.time() if now is None else now
    conn.execute("BEGIN")
    try:
        conn.execute("SELECT pg_advisory_xact_lock(?)", (LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
            " description text NOT NULL, applied_at double precision NOT NULL)"
        )
        version = current_version(conn)
        if version > LATEST:
            raise SchemaTooNew(
                f"the database is at schema version {version}, newer than this hookhub knows"
                f" ({LATEST}); upgrade hookhub on this machine"
            )
        for number, description, statements in MIGRATIONS:
            if number <= version:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                (number, description, at),
            )
            applied.append(number)
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(psycopg.Error):
            conn.execute("ROLLBACK")
        raise
    return applied
