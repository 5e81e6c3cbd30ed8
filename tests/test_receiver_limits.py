"""`hookhub serve` keeps enough file descriptors for server.max_connections, or says it cannot."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from hub.config.models import ServerConfig
from hub.receiver.protocol import EdgeLimits

SCRIPT = """
import logging, resource, sys
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s", stream=sys.stdout)
from hub.server import _raise_file_limit
_raise_file_limit(int(sys.argv[1]))
print("soft", resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def _run(wanted: int, soft: int, hard: int) -> str:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(wanted)],
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=60,
        check=True,
    )
    return done.stdout


@pytest.fixture
def hard_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the hard open-file limit here is {hard}")
    return 2048


def test_soft_limit_is_raised_to_the_cap_plus_margin(hard_limit: int) -> None:
    out = _run(wanted=1500, soft=256, hard=hard_limit)
    assert "soft 1500" in out and "WARNING" not in out


def test_a_hard_limit_below_the_cap_is_warned_about() -> None:
    out = _run(wanted=2024, soft=256, hard=512)
    assert "soft 512" in out
    assert "WARNING open-file limit is below server.max_connections plus a margin" in out


def test_defaults() -> None:
    limits = EdgeLimits()
    assert (limits.max_connections, limits.max_header_bytes, limits.max_headers) == (1000, 65536, 100)
    assert (limits.header_timeout, limits.body_idle_timeout, limits.body_timeout) == (10, 10, 60)
    assert limits.body_first_check == 10
    assert EdgeLimits.from_config(ServerConfig()) == limits  # the config's defaults are the same
