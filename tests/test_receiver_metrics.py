"""/metrics exposition of the receiver's counts and latency histogram, as Prometheus parses it."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hub.receiver.metrics import ReceiverMetrics


def _samples(metrics: ReceiverMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counts_by_source_and_outcome() -> None:
    metrics = ReceiverMetrics()
    for _ in range(3):
        metrics.count("contact-form", "accepted")
    metrics.count("contact-form", "duplicate")
    metrics.count("other", "401")
    samples = _samples(metrics)
    assert samples[("hookhub_webhooks_total", (("outcome", "accepted"), ("source", "contact-form")))] == 3
    assert samples[("hookhub_webhooks_total", (("outcome", "duplicate"), ("source", "contact-form")))] == 1
    assert samples[("hookhub_webhooks_total", (("outcome", "401"), ("source", "other")))] == 1


def test_latency_buckets_are_cumulative_and_inclusive() -> None:
    metrics = ReceiverMetrics()
    for seconds in (0.0004, 0.001, 0.0011, 0.03, 2.0):
        metrics.observe_latency(seconds)
    samples = _samples(metrics)

    def bucket(le: str) -> float:
        return samples[("hookhub_receive_seconds_bucket", (("le", le),))]

    assert bucket("0.001") == 2  # 0.001 itself counts as <= 0.001
    assert bucket("0.0025") == 3
    assert bucket("0.025") == 3
    assert bucket("0.05") == 4
    assert bucket("1.0") == 4
    assert bucket("+Inf") == 5
    assert samples[("hookhub_receive_seconds_count", ())] == 5
    assert abs(samples[("hookhub_receive_seconds_sum", ())] - 2.0325) < 1e-9
