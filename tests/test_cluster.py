"""Issue 15's cluster on one machine: Prefect's server on PostgreSQL, 2 receivers, 2 workers, one ledger.

One cluster serves the whole module (starting Prefect on an empty database takes ~10 s here);
a test that kills or freezes a role starts its replacement first thing in the next test.
The ledger is read straight from PostgreSQL; the wire from the loopback sinks' records.

Slack: the destination's 1 s spacing is a constant (flows/destinations/slack MIN_INTERVAL,
Slack's own limit), so nothing shortens it honestly; this suite posts SLACK_POSTS messages
(~SLACK_POSTS s) and bench/scale.py `--slack 300` runs the issue's full 300 (5 minutes).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.cluster import Cluster, Role, Sender, wait_until
from tests.cluster_sinks import Answer, SlackSink, WebhookSink, gaps
from tests.harness import PROVIDER_FIXTURES, load_fixture
from tests.postgres import require_postgres

TYPEFORM = load_fixture(PROVIDER_FIXTURES / "typeform" / "full_event_registration.json")
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
XOXB = "xoxb-0000000000-1111111111111-SECRETbotTOKENxyz0000000"
CHANNEL = "C0123456789"
LEASE = 5.0
SLACK_POSTS = 20

pytestmark = pytest.mark.timeout(600)


def config(hook: str, slack_api: str) -> str:
    return f"""
sources:
  contact-form: {{provider: typeform, secret: {TYPEFORM["secret"]}}}
  team-form: {{provider: typeform, secret: {TYPEFORM["secret"]}}}
destinations:
  crm: {{type: webhook, url: "{hook}", secret: {WHSEC}, timeout: 60, retry: {{initial: 1, max_delay: 2}}}}
  team: {{type: slack, token: {XOXB}, channel: {CHANNEL}, base_url: "{slack_api}"}}
routes:
  - {{name: crm, from: [contact-form], to: [crm]}}
  - {{name: team, from: [team-form], to: [team]}}
dispatch: {{batch_size: 10, batch_wait: 0.1, chunk_size: 5, max_flows: 1}}
"""


# max_flows 1: a worker holds one batch at a time, so the Slack test's posts are shared by both
# workers (with 2, one worker could claim every batch while the other slept).


@dataclass
class Setup:
    cluster: Cluster
    hook: WebhookSink
    slack: SlackSink

    def workers(self, count: int = 2) -> list[Role]:
        """The running workers, after starting replacements for those a test took down."""
        running = [w for w in self.cluster.workers if w.running()]
        while len(running) < count:
            running.append(self.cluster.add_worker())
        return running

    def receivers(self, count: int = 2) -> list[str]:
        running = [r for r in self.cluster.receivers if r.running()]
        while len(running) < count:
            running.append(self.cluster.add_receiver())
        return [r.url for r in running]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_postgres()
    hook, slack = WebhookSink().start(), SlackSink().start()
    try:
        root = tmp_path_factory.mktemp("cluster")
        with Cluster(root, config(hook.url, slack.base_url), lease=LEASE) as cluster:
            cluster.start(receivers=2, workers=2)
            yield Setup(cluster, hook, slack)
    finally:
        hook.stop()
        slack.stop()


def crm_pairs(cluster: Cluster, ids: set[str]) -> dict[str, tuple[str, str | None]]:
    """inbox id -> (status, claimed_by) of its crm delivery, for `ids`."""
    rows = cluster.query(
        "SELECT inbox_id, status, claimed_by FROM deliveries WHERE destination = 'crm'"
        " AND inbox_id = ANY(%s)",
        (list(ids),),
    )
    return {str(r[0]): (str(r[1]), r[2]) for r in rows}


def all_delivered(cluster: Cluster, ids: set[str]) -> bool:
    pairs = crm_pairs(cluster, ids)
    return len(pairs) == len(ids) and all(status == "delivered" for status, _ in pairs.values())


def delivered_attempts(cluster: Cluster, ids: set[str]) -> dict[str, int]:
    rows = cluster.query(
        "SELECT inbox_id, count(*) FROM attempts WHERE destination = 'crm' AND outcome = 'delivered'"
        " AND inbox_id = ANY(%s) GROUP BY inbox_id",
        (list(ids),),
    )
    return {str(r[0]): int(r[1]) for r in rows}


def in_flight(cluster: Cluster, owner: str) -> set[str]:
    rows = cluster.query(
        "SELECT inbox_id FROM deliveries WHERE status = 'sending' AND claimed_by = %s", (owner,)
    )
    return {str(r[0]) for r in rows}


def test_sigkill_a_worker_mid_batch_delivers_every_acked_submission_once(setup: Setup) -> None:
    cluster, hook = setup.cluster, setup.hook
    victim, _ = setup.workers()
    owner = cluster.owner_of(victim)
    assert owner is not None
    hook.delay = 0.3  # deliveries stay on the wire long enough to be cut
    try:
        sender = Sender(cluster.config)
        sender.send(setup.receivers(), 60)
        ids = set(sender.acked)
        assert len(ids) == 60 and sender.refused == 0, cluster.logs()

        before = wait_until(
            lambda: in_flight(cluster, owner), 60, f"{victim.name} to have deliveries in flight"
        )
        victim.kill()
        cut = before | in_flight(cluster, owner)

        wait_until(lambda: all_delivered(cluster, ids), 120, "every acked submission delivered", cluster)
    finally:
        hook.delay = 0.0
    assert delivered_attempts(cluster, ids) == dict.fromkeys(ids, 1)
    copies = hook.copies()
    # One webhook-id per pair: a resend carries the same id as the copy it repeats.
    assert set(copies) >= {f"{i}.crm" for i in ids}
    twice = {wid.removesuffix(".crm") for wid, n in copies.items() if n > 1 and wid.endswith(".crm")}
    assert twice <= cut, f"sent twice but not in flight at the kill: {sorted(twice - cut)}"


def test_prefect_shows_which_worker_ran_each_delivery(setup: Setup) -> None:
    cluster = setup.cluster
    setup.workers()
    sender = Sender(cluster.config)
    sender.send(setup.receivers(), 30)
    ids = set(sender.acked)
    assert len(ids) == 30, cluster.logs()
    wait_until(lambda: all_delivered(cluster, ids), 120, "every acked submission delivered", cluster)
    # A delivered row keeps the owner whose claim sent it; Prefect's server must name the same.
    senders = {owner for _, owner in crm_pairs(cluster, ids).values()}
    assert None not in senders
    answer = httpx.post(f"{cluster.api_url}/flow_runs/filter", json={"limit": 200}, timeout=30)
    answer.raise_for_status()
    tagged: dict[str, list[str]] = {}
    for run in answer.json():
        workers = [t.removeprefix("worker:") for t in run["tags"] if t.startswith("worker:")]
        assert len(workers) == 1, f"flow run {run['name']!r} has tags {run['tags']}"
        assert run["name"].endswith(f" on {workers[0]}"), run["name"]
        tagged.setdefault(workers[0], []).append(run["name"])
    assert senders <= set(tagged), f"delivered by {senders}, flow runs tagged {sorted(tagged)}"


def test_a_worker_frozen_past_its_lease_cannot_overwrite_its_successor(setup: Setup) -> None:
    """Its copy is held at the sink while it is stopped; the successor's copies fail (500) until the
    frozen worker, resumed, has had its 200: the ledger must still show the successor's outcome."""
    cluster, hook = setup.cluster, setup.hook
    setup.workers()
    succeed = threading.Event()

    def script(webhook_id: str, before: int) -> Answer:
        if before == 0:
            return Answer(200, held=True)
        return Answer(200 if succeed.is_set() else 500)

    hook.script = script
    try:
        sender = Sender(cluster.config)
        submission = sender.post_to(setup.receivers()[0])
        wait_until(lambda: hook.held() == 1, 60, "the first copy on the wire, held")
        _, owner = crm_pairs(cluster, {submission})[submission]
        frozen = next(w for w in cluster.workers if w.running() and cluster.owner_of(w) == owner)
        refused_before = refusals(frozen)
        frozen.signal(signal.SIGSTOP)
        try:
            wait_until(
                lambda: (
                    hook.copies().get(f"{submission}.crm", 0) >= 2
                    and crm_pairs(cluster, {submission})[submission][0] == "retrying"
                ),
                LEASE * 6 + 60,
                "the successor to take the expired lease, send again and record its 500",
            )
        finally:
            frozen.signal(signal.SIGCONT)
        hook.release()  # the frozen worker's copy now answers 200, long after its lease ended
        wait_until(
            lambda: refusals(frozen) > refused_before,
            60,
            f"{frozen.name} to log its refused outcome",
            cluster,
        )
        # The successor's outcome stands: its 500, not the frozen worker's late 200.
        ((status, code),) = cluster.query(
            "SELECT status, last_status_code FROM deliveries WHERE inbox_id = %s AND destination = 'crm'",
            (submission,),
        )
        assert status in ("retrying", "sending") and code == 500, (status, code)
        succeed.set()
        wait_until(lambda: all_delivered(cluster, {submission}), 60, "the successor's retry delivered")
        assert delivered_attempts(cluster, {submission}) == {submission: 1}
    finally:
        hook.script = None
        hook.release()
        succeed.set()


def refusals(role: Role) -> int:
    """Outcomes the role tried to record for claims it no longer owned (hub/spool/delivery_outcomes.py)."""
    return role.text().count('"late_outcome_refused"')


def test_killing_a_receiver_under_load_loses_nothing_acknowledged(setup: Setup) -> None:
    cluster = setup.cluster
    setup.workers()
    urls = setup.receivers()
    victim = next(r for r in cluster.receivers if r.running() and r.url == urls[0])
    sender = Sender(cluster.config)
    load = threading.Thread(target=sender.send, args=(urls, 400), kwargs={"threads": 8}, daemon=True)
    load.start()
    wait_until(lambda: len(sender.acked) >= 60, 60, "the load under way")
    victim.kill()
    load.join(timeout=300)
    assert not load.is_alive()
    ids = set(sender.acked)
    assert sender.refused > 0, "the kill came after the load: nothing was in flight"
    assert len(ids) + sender.refused == 400
    wait_until(lambda: all_delivered(cluster, ids), 180, "every acknowledged submission delivered", cluster)
    assert delivered_attempts(cluster, ids) == dict.fromkeys(ids, 1)


def test_slack_posts_to_one_channel_from_two_workers_keep_slacks_pace(setup: Setup) -> None:
    cluster, slack = setup.cluster, setup.slack
    setup.workers()
    sender = Sender(cluster.config, "team-form")
    sender.send(setup.receivers(), SLACK_POSTS, threads=4)
    assert len(sender.acked) == SLACK_POSTS
    started = time.monotonic()
    wait_until(
        lambda: sum(1 for p in slack.to(CHANNEL) if p.status == 200) >= SLACK_POSTS,
        SLACK_POSTS * 3 + 60,
        f"{SLACK_POSTS} posts to {CHANNEL}",
    )
    took = time.monotonic() - started
    posters = cluster.query("SELECT DISTINCT claimed_by FROM deliveries WHERE destination = 'team'")
    assert len(posters) == 2, f"the posts were not shared by both workers: {posters}"
    posts = slack.to(CHANNEL)
    closest = ", ".join(f"{g:.3f}" for g in sorted(gaps(posts))[:5])
    limited = [p.status for p in posts].count(429)
    assert limited == 0, (
        f"Slack would have answered {limited} of {len(posts)} posts 429; closest gaps {closest} s"
    )
    assert min(gaps(posts)) >= 1.0, f"posts closer than 1 s: {closest} s"
    assert took < SLACK_POSTS * 1.6, f"{SLACK_POSTS} posts took {took:.1f} s: the budget is under-used"
