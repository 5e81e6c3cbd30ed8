"""Webhook deliveries run in a worker process; Slack stays in the hub's; workers fail and stop safely.

Through a real hub (uvicorn, Prefect, spool) and a real loopback destination. Which process
sent a request is read off the kernel's socket table: the destination records the sender's
port, and /proc tells which process holds that socket.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from flows.delivery_pool import DeliveryPool
from hub.dispatch import Dispatcher
from tests.fake_destination import FakeDestination, by_webhook_id
from tests.harness import ServeProcess, descendants, wait_for
from tests.test_pipeline_e2e import (
    FIRST_DELIVERY,
    FULL,
    MINIMAL,
    fake,
    hub_factory,
    inbox_state,
    post,
    status_of,
    write_config,
)

__all__ = ["fake", "hub_factory"]  # fixtures used below

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket table")


def owner_of_port(port: int, pids: list[int]) -> int | None:
    """Which of `pids` holds the TCP socket bound to local `port` on 127.0.0.1."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return pid
    return None


def dispatcher_of(hub) -> Dispatcher:  # type: ignore[no-untyped-def]
    return next(s for s in hub.services if isinstance(s, Dispatcher))


def test_destination_types_that_may_leave_the_hubs_process() -> None:
    assert DeliveryPool.takes("webhook")
    assert not any(
        DeliveryPool.takes(t)
        for t in (
            "slack",
            "file",
            "smtp",
            "hubspot",
            "salesforce",
            "pipedrive",
            "sendgrid",
            "postmark",
            "no-such-type",
        )
    )


def test_webhook_goes_out_from_a_worker_and_slack_from_the_hub(
    tmp_path, fake: FakeDestination, hub_factory
) -> None:  # type: ignore[no-untyped-def]
    hub, server = hub_factory(write_config(tmp_path / "connectors.yaml", fake))
    submission_id = post(server, FULL).json()["id"]
    wait_for(
        lambda: (
            inbox_state(hub, submission_id) == "done" and status_of(hub, submission_id, "crm") == "delivered"
        ),
        timeout=FIRST_DELIVERY,
        what="delivery",
    )
    pool = dispatcher_of(hub).pool
    assert pool is not None
    workers = pool.pids()
    assert len(workers) == 1 and workers[0] != os.getpid()

    (hook,) = fake.received("/hook")
    (slack,) = fake.received("/slack")
    # The hub keeps its connections open, so both senders' sockets are still there to look up.
    assert owner_of_port(hook.peer_port, [*workers, os.getpid()]) == workers[0]
    assert owner_of_port(slack.peer_port, [*workers, os.getpid()]) == os.getpid()


def test_a_config_reload_reaches_the_worker(tmp_path, fake: FakeDestination, hub_factory) -> None:  # type: ignore[no-untyped-def]
    config = write_config(tmp_path / "connectors.yaml", fake)
    hub, server = hub_factory(config)
    first = post(server, FULL).json()["id"]
    wait_for(
        lambda: status_of(hub, first, "crm") == "delivered", timeout=FIRST_DELIVERY, what="first delivery"
    )
    write_config(config, fake, hook_path="/moved")
    assert hub.config.reload()  # what the file watch does in `hookhub serve`
    second = post(server, MINIMAL).json()["id"]
    wait_for(lambda: status_of(hub, second, "crm") == "delivered", timeout=60, what="second delivery")
    assert len(fake.received("/hook")) == 1 and len(fake.received("/moved")) == 1


def test_a_worker_killed_mid_chunk_loses_nothing(tmp_path, fake: FakeDestination, hub_factory) -> None:  # type: ignore[no-untyped-def]
    hub, server = hub_factory(write_config(tmp_path / "connectors.yaml", fake))
    warm = post(server, MINIMAL).json()["id"]
    wait_for(
        lambda: status_of(hub, warm, "crm") == "delivered", timeout=FIRST_DELIVERY, what="warm-up delivery"
    )
    pool = dispatcher_of(hub).pool
    assert pool is not None
    (victim,) = pool.pids()

    fake.hold("/hook", seconds=30)  # the next delivery hangs in the worker until released
    submission_id = post(server, FULL).json()["id"]
    wait_for(lambda: fake.waiting("/hook") == 1, timeout=60, what="the delivery to reach the destination")
    os.kill(victim, signal.SIGKILL)
    fake.release("/hook")

    # The flow run fails, its claims go back to the queue, and a new worker delivers.
    wait_for(lambda: status_of(hub, submission_id, "crm") == "delivered", timeout=60, what="redelivery")
    assert victim not in pool.pids() and len(pool.pids()) == 1
    copies = by_webhook_id(fake.received("/hook"))
    assert len(copies) == 2  # the warm-up and this one; a copy the killed worker sent shares its webhook-id
    assert status_of(hub, warm, "crm") == "delivered"


def test_workers_die_with_a_killed_hub(tmp_path, fake: FakeDestination) -> None:  # type: ignore[no-untyped-def]
    serve = ServeProcess(
        write_config(tmp_path / "connectors.yaml", fake),
        tmp_path / "data",
        tmp_path / "prefect",
        tmp_path / "serve.log",
    )
    try:
        httpx.post(
            f"{serve.url}/hooks/contact-form",
            content=FULL["body"].encode("utf-8"),
            timeout=30,
            headers={k: v for k, v in FULL["headers"].items() if k.lower() != "content-length"},
        )
        wait_for(lambda: len(fake.received("/hook")) == 1, timeout=FIRST_DELIVERY, what="the delivery")
        workers = wait_for(
            lambda: [
                p
                # Below the delivery process `hookhub serve` starts (hub/dispatch/delivery_process.py).
                for p in descendants(serve.proc.pid)
                if b"multiprocessing" in cmdline(p) and b"resource_tracker" not in cmdline(p)
            ],
            timeout=10,
            what="the worker",
        )
        # The hub alone, not its process group: the worker must go because the hub went.
        os.kill(serve.proc.pid, signal.SIGKILL)
        serve.proc.wait(timeout=10)
        wait_for(lambda: not any(alive(p) for p in workers), timeout=10, what="the workers to go")
    finally:
        serve.kill()


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


SLOW_AND_QUICK = """
sources:
  contact-form:
    provider: typeform
    secret: {secret}
destinations:
  slow: {{type: webhook, url: '{slow}', secret: {whsec}, timeout: 60}}
  quick: {{type: webhook, url: '{quick}', secret: {whsec}}}
routes:
  - {{name: both, from: ["*"], to: [slow, quick]}}
"""


def test_a_slow_receiver_holds_only_its_own_chunk(tmp_path, fake: FakeDestination, hub_factory) -> None:  # type: ignore[no-untyped-def]
    from tests.test_pipeline_e2e import WHSEC

    config = tmp_path / "connectors.yaml"
    config.write_text(
        SLOW_AND_QUICK.format(
            secret=FULL["secret"], slow=fake.url("/slow"), quick=fake.url("/quick"), whsec=WHSEC
        ),
        encoding="utf-8",
    )
    hub, server = hub_factory(config)
    fake.hold("/slow", seconds=60)
    try:
        submission_id = post(server, FULL).json()["id"]
        wait_for(
            lambda: fake.waiting("/slow") == 1, timeout=FIRST_DELIVERY, what="the slow receiver to be reached"
        )
        # Both chunks are in the one worker process; the quick one is not stuck behind the slow one.
        wait_for(
            lambda: status_of(hub, submission_id, "quick") == "delivered", timeout=30, what="the quick one"
        )
        assert fake.waiting("/slow") == 1 and status_of(hub, submission_id, "slow") == "sending"
        assert len(dispatcher_of(hub).pool.pids()) == 1
    finally:
        fake.release("/slow")
    wait_for(lambda: status_of(hub, submission_id, "slow") == "delivered", timeout=30, what="the slow one")


def test_no_worker_is_spawned_without_destinations_that_use_one(tmp_path, hub_factory) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "connectors.yaml"
    config.write_text(
        f"""
sources:
  contact-form: {{provider: typeform, secret: {FULL["secret"]}}}
destinations:
  out: {{type: file, path: {tmp_path / "out.jsonl"}}}
routes:
  - {{name: all, from: ["*"], to: [out]}}
""",
        encoding="utf-8",
    )
    hub, server = hub_factory(config)
    submission_id = post(server, FULL).json()["id"]
    wait_for(
        lambda: status_of(hub, submission_id, "out") == "delivered", timeout=FIRST_DELIVERY, what="delivery"
    )
    pool = dispatcher_of(hub).pool
    assert pool is not None and pool.pids() == []
