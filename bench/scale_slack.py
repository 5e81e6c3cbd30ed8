"""N Slack posts to one channel from 2 workers (issue 15's 300 posts): 429s, smallest gap, achieved rate.

The Slack-like API (tests/cluster_sinks.py) answers 429 + Retry-After to a post less than 1 s after
the channel's previous one; the cluster is tests/cluster.py's (Prefect server on PostgreSQL).
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.cluster import Cluster, Sender, wait_until
from tests.cluster_sinks import SlackSink, gaps

XOXB = "xoxb-0000000000-1111111111111-SECRETbotTOKENxyz0000000"
CHANNEL = "C0123456789"


def slack_run(root: Path, posts: int) -> str:
    slack = SlackSink().start()
    try:
        config = f"""
sources:
  team-form: {{provider: typeform, secret: bench-typeform-secret}}
destinations:
  team: {{type: slack, token: {XOXB}, channel: {CHANNEL}, base_url: "{slack.base_url}"}}
routes:
  - {{name: team, from: [team-form], to: [team]}}
"""
        with Cluster(root, config, log_level="warning") as cluster:
            cluster.start(receivers=2, workers=2)
            sender = Sender(cluster.config, "team-form")
            sender.send([r.url for r in cluster.receivers], posts)
            started = time.monotonic()
            try:
                wait_until(
                    lambda: sum(1 for p in slack.to(CHANNEL) if p.status == 200) >= len(sender.acked),
                    posts * 2 + 120,
                    f"{posts} Slack posts",
                )
                finished = ""
            except AssertionError:  # the figures so far still say what went wrong
                finished = f"NOT all posted after {posts * 2 + 120} s; "
            seconds = time.monotonic() - started
        sent = slack.to(CHANNEL)
    finally:
        slack.stop()
    ok = [p for p in sent if p.status == 200]
    span = max(p.at for p in ok) - min(p.at for p in ok)
    limited = sum(p.status == 429 for p in sent)
    under = sum(g < 1.0 for g in gaps(sent))
    return finished + (
        f"Slack, {len(sender.acked)} posts to one channel from 2 workers: {len(ok)} posted, "
        f"{limited} x 429, {under} gaps under 1 s, smallest {min(gaps(sent)):.3f} s, "
        f"achieved {(len(ok) - 1) / span:.3f} posts/s over {span:.0f} s ({seconds:.0f} s after the last ack)"
    )
