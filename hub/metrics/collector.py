"""The delivery half of /metrics: a prometheus-client collector over a spool snapshot.

Counters come from the spool (hub/spool/stats.py: every process that delivers adds to them),
gauges from the same snapshot, and delivery health and config reloads from the running hub.
`collect` never touches SQLite: the endpoint refreshes the snapshot off the event loop first.
Labels are destination names from connectors.yaml, outcomes and states: bounded, and never
an id, an address or a reason text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from hub.health import DeliveryHealth
from hub.metrics.readiness import DISPATCHER_STALE_SECONDS
from hub.metrics.snapshot import Snapshot, SnapshotCache
from hub.runtime import ConfigHolder
from hub.spool.stats import ATTEMPTS, BUCKET, LATENCY_BUCKETS, LATENCY_SUM, OUTCOME

OUTCOMES = ("delivered", "retrying", "deferred", "dead", "skipped")
WAITING = ("pending", "sending", "retrying")


class DeliveryCollector(Collector):
    def __init__(
        self,
        cache: SnapshotCache,
        destinations: Callable[[], Iterable[str]],
        config: ConfigHolder,
        health: Callable[[], DeliveryHealth | None],
        clock: Callable[[], float],
    ) -> None:
        self.cache = cache
        self._destinations = destinations
        self._config = config
        self._health = health
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        snapshot = self.cache.latest
        if snapshot is not None:
            yield from self._spool_series(snapshot)
            yield from self._reconcile_series(snapshot)
        yield from self._health_series()
        yield from self._config_series()

    def _spool_series(self, snap: Snapshot) -> Iterator[Metric]:
        names = sorted({*self._destinations(), *snap.counters})
        deliveries = CounterMetricFamily(
            "hookhub_deliveries",
            "Delivery outcomes recorded, by destination and outcome (deferred: held by the target's pause,"
            " skipped: a route's `when` was false)",
            labels=["destination", "outcome"],
        )
        attempts = CounterMetricFamily(
            "hookhub_delivery_attempts", "Delivery attempts made, by destination", labels=["destination"]
        )
        for name in names:
            counts = snap.counters.get(name, {})
            for outcome in OUTCOMES:
                deliveries.add_metric([name, outcome], counts.get(OUTCOME + outcome, 0.0))
            attempts.add_metric([name], counts.get(ATTEMPTS, 0.0))
        yield deliveries
        yield attempts
        yield _latency(names, snap)
        yield from _waiting_series(names, snap)
        submissions = GaugeMetricFamily(
            "hookhub_submissions", "Submissions in the spool, by state", labels=["state"]
        )
        for state, count in sorted(snap.submissions.items()):
            submissions.add_metric([state], count)
        yield submissions
        yield GaugeMetricFamily(
            "hookhub_pending_oldest_age_seconds",
            "Age of the oldest submission not yet routed (pending or claimed); 0 when none",
            value=snap.oldest_pending_age(),
        )
        disabled = GaugeMetricFamily(
            "hookhub_destination_disabled",
            "1 for a destination disabled by a 410 (`hookhub replay` enables it again)",
            labels=["destination"],
        )
        for name in sorted({*names, *snap.disabled}):
            disabled.add_metric([name], 1.0 if name in snap.disabled else 0.0)
        yield disabled
        yield GaugeMetricFamily(
            "hookhub_spool_size_bytes",
            "Store size: the SQLite file with its WAL, or the PostgreSQL schema's tables",
            value=snap.spool_bytes,
        )
        yield GaugeMetricFamily(
            "hookhub_spool_read_seconds", "Time the last read of these numbers took", value=snap.read_seconds
        )
        yield from _retention_series(snap)

    def _reconcile_series(self, snap: Snapshot) -> Iterator[Metric]:
        """Reconciliation per source (labels: source ids from connectors.yaml)."""
        stored = CounterMetricFamily(
            "hookhub_reconciled_submissions",
            "Submissions stored by reconciliation (their webhook never arrived) or `hookhub import`,"
            " by source and origin",
            labels=["source", "origin"],
        )
        last_run = GaugeMetricFamily(
            "hookhub_reconcile_last_run_timestamp_seconds",
            "When the source was last reconciled (unix time), by outcome (ok, failed, refused)",
            labels=["source", "outcome"],
        )
        webhook = GaugeMetricFamily(
            "hookhub_webhook_enabled",
            "1 if the provider said at the last reconciliation that the source's webhook is enabled and"
            " points here, 0 if not (disabled, missing or elsewhere); absent where it cannot say",
            labels=["source"],
        )
        for source, row in sorted(snap.reconcile.items()):
            stored.add_metric([source, "reconciled"], row.reconciled)
            stored.add_metric([source, "imported"], row.imported)
            if row.last_run_at is not None:
                last_run.add_metric([source, row.last_outcome or "ok"], row.last_run_at)
            if row.webhook_state is not None:
                webhook.add_metric([source], 1.0 if row.webhook_state == "ok" else 0.0)
        yield from (stored, last_run, webhook)

    def _health_series(self) -> Iterator[Metric]:
        health = self._health()
        if health is None or not health.dispatching:  # --no-dispatch: another process delivers
            return
        reachable = health.prefect_reachable
        yield GaugeMetricFamily(
            "hookhub_prefect_up",
            "1 if Prefect's API answered the dispatcher's last check",
            value=1.0 if reachable else 0.0,
        )
        alive = health.dispatcher_alive(self._clock(), DISPATCHER_STALE_SECONDS)
        yield GaugeMetricFamily(
            "hookhub_dispatcher_up",
            f"1 if the dispatcher's loop ran within the last {DISPATCHER_STALE_SECONDS:g} s",
            value=1.0 if alive else 0.0,
        )

    def _config_series(self) -> Iterator[Metric]:
        reloads = CounterMetricFamily(
            "hookhub_config_reloads", "Reloads of connectors.yaml, by result", labels=["result"]
        )
        counts = self._config.reload_counts
        for result in ("accepted", "rejected"):
            reloads.add_metric([result], counts.get(result, 0))
        yield reloads
        yield GaugeMetricFamily(
            "hookhub_config_last_reload_success_timestamp_seconds",
            "When the configuration in force was loaded (unix time)",
            value=self._config.last_good_at,
        )


def _latency(names: list[str], snap: Snapshot) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        "hookhub_delivery_latency_seconds",
        "Time from the receiver's answer to the delivery, by destination",
        labels=["destination"],
    )
    bounds = (*map(str, LATENCY_BUCKETS), "+Inf")
    for name in names:
        counts = snap.counters.get(name, {})
        cumulative, buckets = 0.0, []
        for index, bound in enumerate(bounds):
            cumulative += counts.get(f"{BUCKET}{index}", 0.0)
            buckets.append((bound, cumulative))
        family.add_metric([name], buckets, counts.get(LATENCY_SUM, 0.0))
    return family


def _waiting_series(names: list[str], snap: Snapshot) -> Iterator[Metric]:
    waiting = GaugeMetricFamily(
        "hookhub_deliveries_waiting",
        "Deliveries not settled yet, by destination and status (pending, sending, retrying)",
        labels=["destination", "status"],
    )
    dead = GaugeMetricFamily(
        "hookhub_dead_letters", "Dead deliveries waiting for `hookhub replay`", labels=["destination"]
    )
    overdue = GaugeMetricFamily(
        "hookhub_delivery_overdue_seconds",
        "How long the most overdue pending or retrying delivery has been due; 0 when none",
        labels=["destination"],
    )
    everyone = sorted({*names, *(destination for _, destination in snap.open_deliveries)})
    for name in everyone:
        due: list[float] = []
        for status in WAITING:
            rows = snap.open_deliveries.get((status, name))
            waiting.add_metric([name, status], rows.count if rows else 0)
            if rows and status != "sending" and rows.next_attempt_at is not None:
                due.append(rows.next_attempt_at)
        late = snap.taken_at - min(due) if due else 0.0
        overdue.add_metric([name], max(0.0, late))
        rows = snap.open_deliveries.get(("dead", name))
        dead.add_metric([name], rows.count if rows else 0)
    yield waiting
    yield dead
    yield overdue


def _retention_series(snap: Snapshot) -> Iterator[Metric]:
    purged = CounterMetricFamily(
        "hookhub_retention_purged_rows",
        "Rows `retention:` purged: raw bodies emptied (raw_requests), submissions and hookhub's"
        " Prefect flow runs removed (submissions, flow_runs)",
        labels=["purge"],
    )
    for purge, count in sorted(snap.retention_purged.items()):
        purged.add_metric([purge], count)
    yield purged
    if snap.retention_last_run is not None:
        yield GaugeMetricFamily(
            "hookhub_retention_last_run_timestamp_seconds",
            "When `retention:` was last enforced (unix time)",
            value=snap.retention_last_run,
        )
