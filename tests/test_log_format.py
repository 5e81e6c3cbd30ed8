"""One log format for hookhub's, uvicorn's and Prefect's records: text on a terminal, JSON otherwise.

Real processes: a script that sets up logging as `hookhub serve` does and then imports Prefect
(as the dispatcher does, later), with stderr a pseudo-terminal or a pipe; and `hookhub serve`
itself with `--log-format text`, taking a webhook and a malformed request (uvicorn's record).
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx

from tests.harness import PROVIDER_FIXTURES, free_socket, load_fixture, serve_command, wait_for

TEXT_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) +[\w.]+: ")

SCRIPT = textwrap.dedent(
    """
    import logging, sys
    from hub.logs import setup_logging
    setup_logging("info", *sys.argv[1:])
    import flows.pipeline  # imports Prefect, which configures its loggers now
    logging.getLogger("hookhub.receiver").info("webhook accepted", extra={"id": "01TEST", "source": "demo"})
    logging.getLogger("prefect.engine").error("Finished in state Failed('1 of 2 dead')")
    logging.getLogger("prefect.client").warning("a Prefect client warning")
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    logging.getLogger("httpx").warning("some library")
    """
)
LOGGERS = {"hookhub.receiver", "prefect.engine", "prefect.client", "uvicorn.error", "httpx"}


def run_script(*args: str, terminal: bool) -> list[str]:
    """SCRIPT's stderr lines, with stderr a pseudo-terminal or a pipe."""
    command = [sys.executable, "-c", SCRIPT, *args]
    env = {k: v for k, v in os.environ.items() if k != "HOOKHUB_LOG_FORMAT"}
    if not terminal:
        done = subprocess.run(command, env=env, stderr=subprocess.PIPE, timeout=120, check=True)
        return done.stderr.decode().splitlines()
    main, child = pty.openpty()
    proc = subprocess.Popen(command, env=env, stderr=child, stdout=subprocess.DEVNULL)
    os.close(child)
    out = b""
    while True:
        ready, _, _ = select.select([main], [], [], 120)
        assert ready, "the script wrote nothing for 120 s"
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal closed: the script ended
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    assert proc.wait(timeout=30) == 0, out.decode(errors="replace")
    return out.decode().replace("\r\n", "\n").splitlines()


def test_text_on_a_terminal_for_every_library() -> None:
    lines = run_script(terminal=True)
    assert len(lines) == len(LOGGERS), lines
    assert all(TEXT_LINE.match(line) for line in lines), lines
    assert {line.split()[2].rstrip(":") for line in lines} == LOGGERS
    assert any("webhook accepted  id=01TEST source=demo" in line for line in lines), lines


def test_json_when_stderr_is_not_a_terminal() -> None:
    lines = run_script(terminal=False)
    entries = [json.loads(line) for line in lines]
    assert {e["logger"] for e in entries} == LOGGERS
    accepted = next(e for e in entries if e["logger"] == "hookhub.receiver")
    assert accepted["id"] == "01TEST" and accepted["level"] == "info"


def test_log_format_chooses_over_the_terminal() -> None:
    lines = run_script("json", terminal=True)
    assert {json.loads(line)["logger"] for line in lines} == LOGGERS


def test_serve_with_log_format_text(tmp_path: Path) -> None:
    fixture = load_fixture(PROVIDER_FIXTURES / "typeform" / "minimal.json")
    config = tmp_path / "connectors.yaml"
    config.write_text(
        f"sources:\n  form:\n    provider: typeform\n    secret: {fixture['secret']}\n", encoding="utf-8"
    )
    port = free_socket().getsockname()[1]
    log = tmp_path / "stderr.log"
    command = serve_command(config, tmp_path / "data", port, "--no-dispatch", "--log-format", "text")
    with log.open("wb") as stderr:
        proc = subprocess.Popen(command, stderr=stderr, stdout=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(url), 60, what="hookhub serve to answer")
        headers = {k: v for k, v in fixture["headers"].items() if k.lower() != "content-length"}
        answer = httpx.post(f"{url}/hooks/form", content=fixture["body"].encode(), headers=headers)
        assert answer.json()["status"] == "accepted", answer.text
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            raw.recv(1024)
        wait_for(lambda: "uvicorn.error" in log.read_text(), 30, what="uvicorn's record")
        wait_for(lambda: "webhook accepted" in log.read_text(), 30, what="the accepted line")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    lines = [line for line in log.read_text().splitlines() if not line.startswith("hookhub: listening")]
    assert lines and all(TEXT_LINE.match(line) for line in lines), lines
    accepted = next(line for line in lines if "webhook accepted" in line)
    event_id = json.loads(fixture["body"])["event_id"]
    assert f"id={answer.json()['id']}" in accepted and f"event_id={event_id}" in accepted
    assert "source=form" in accepted


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
