"""Hostile requests against a real running hub on a loopback socket (issue 11's probe, as a suite).

Each case sends one hostile request (httpx where it can, a raw socket where httpx would refuse
or fix the request) and checks the status, that nothing was stored that should not be, that
/healthz still answers afterwards, and that the hub logged no error and no traceback. The
hub's HTTP limits are set low in its `server:` config (1 s timeouts, 20 connections) so the
slow cases stay short.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx
import pytest

from connectors._schemes import b64, hmac_digest, sign_standard_webhooks
from hub.server import Hub
from tests.harness import RunningServer, start_hub, wait_for

TYPEFORM_SECRET = "hostile-typeform-secret"
WHSEC = "whsec_" + base64.b64encode(b"hostile-standard-webhooks-secret!").decode()
TOKEN = "hostile-url-token-0123456789abcdef"
HEADER_TIMEOUT = 1.0
BODY_IDLE_TIMEOUT = 1.0
BODY_TIMEOUT = 3.0
MAX_CONNECTIONS = 20
MARGIN = 5.0  # seconds on top of a configured timeout before a case counts as hanging

CONFIG = f"""
server:
  max_body_bytes: 8388608
  header_timeout: {HEADER_TIMEOUT}
  body_idle_timeout: {BODY_IDLE_TIMEOUT}
  body_timeout: {BODY_TIMEOUT}
  max_connections: {MAX_CONNECTIONS}
sources:
  tf: {{provider: typeform, secret: {TYPEFORM_SECRET}}}
  sw: {{provider: standard_webhooks, secret: "{WHSEC}"}}
  wufoo: {{provider: wufoo, secret: {TOKEN}}}
  jot: {{provider: jotform, secret: {TOKEN}}}
destinations:
  out: {{type: file, path: out.jsonl}}
routes:
  - {{name: all, from: ["*"], to: [out]}}
"""


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Running:
    hub: Hub
    server: RunningServer
    logs: Captured

    @property
    def url(self) -> str:
        return self.server.url

    def stored(self) -> int:
        conn = sqlite3.connect(self.hub.spool_path)
        try:
            return conn.execute("SELECT count(*) FROM inbox").fetchone()[0]
        finally:
            conn.close()

    def open_connections(self) -> int:
        return len(self.server.server.server_state.connections)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("hostile")
    (root / "connectors.yaml").write_text(CONFIG, encoding="utf-8")
    logs = Captured()
    loggers = [logging.getLogger(name) for name in ("hookhub", "uvicorn", "")]
    hookhub_level = loggers[0].level
    loggers[0].setLevel(logging.INFO)  # the receiver's reasons are logged at info
    for logger in loggers:
        logger.addHandler(logs)
    hub, server = start_hub(root / "connectors.yaml", root / "data")
    try:
        yield Running(hub, server, logs)
    finally:
        server.stop()
        for logger in loggers:
            logger.removeHandler(logs)
        loggers[0].setLevel(hookhub_level)


# --- building requests ---------------------------------------------------------------------------


def typeform_headers(body: bytes, content_type: str = "application/json") -> dict[str, str]:
    signature = "sha256=" + b64(hmac_digest(TYPEFORM_SECRET.encode(), body))
    return {"content-type": content_type, "typeform-signature": signature}


def standard_headers(body: bytes, timestamp: int | str, msg_id: str = "msg_hostile") -> dict[str, str]:
    headers = sign_standard_webhooks(WHSEC, msg_id, int(time.time()), body)
    if isinstance(timestamp, str) or timestamp != int(time.time()):
        # Re-sign over the given timestamp text, as a sender with the secret (replaying) would.
        key = base64.b64decode(WHSEC.removeprefix("whsec_"))
        signed = f"{msg_id}.{timestamp}.".encode() + body
        headers["webhook-timestamp"] = str(timestamp)
        headers["webhook-signature"] = "v1," + b64(hmac_digest(key, signed))
    return {"content-type": "application/json", **headers}


def typeform_body(event_id: str) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "event_type": "form_response",
            "form_response": {"form_id": "f1", "token": event_id, "answers": []},
        }
    ).encode()


def nested_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def form_fields(count: int) -> bytes:
    return urlencode([(f"Field{i}", "x") for i in range(count)]).encode()


def multipart_fields(count: int, boundary: str) -> bytes:
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="q{{}}"\r\n\r\nx\r\n'
    return ("".join(part.format(i) for i in range(count)) + f"--{boundary}--\r\n").encode()


# --- sending -------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int  # 0: the connection closed without an answer
    seconds: float
    body: bytes = b""


def post(base: str, path: str, body: bytes, headers: dict[str, str], method: str = "POST") -> Answer:
    started = time.monotonic()
    response = httpx.request(method, base + path, content=body, headers=headers, timeout=30)
    return Answer(response.status_code, time.monotonic() - started, response.content)


def raw(port: int, pieces: list[bytes], pause: float = 0.0, timeout: float = 30.0) -> Answer:
    """Send `pieces` (pausing `pause` s between them) on a fresh socket while reading the answer.

    Sending runs in a thread so that a server that answers early and stops reading cannot
    deadlock the client; a send that fails because the server closed is expected.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    started = time.monotonic()

    def send() -> None:
        try:
            for i, piece in enumerate(pieces):
                if i and pause:
                    time.sleep(pause)
                sock.sendall(piece)
        except OSError:
            pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    received = b""
    try:
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    except OSError:
        pass
    seconds = time.monotonic() - started
    sock.close()
    sender.join(timeout=timeout)
    status = int(received.split(b" ", 2)[1]) if received.startswith(b"HTTP/1.1 ") else 0
    return Answer(status, seconds, received.partition(b"\r\n\r\n")[2])


def head(method: str, target: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def signed_head(body: bytes) -> bytes:
    """The head of a correctly signed Typeform POST of `body`."""
    return head("POST", "/hooks/tf", [*typeform_headers(body).items(), ("content-length", str(len(body)))])


# --- the cases -----------------------------------------------------------------------------------

Send = Callable[[Running], Answer]


@dataclass
class Case:
    name: str
    send: Send
    status: int
    stored: int = 0  # rows the case adds to the spool
    within: float = 10.0  # seconds the answer may take at most (a hang guard, not a benchmark)
    logged: str | None = None  # a receiver reason that must be logged at info
    allow_warnings: list[str] = field(default_factory=list)


def _signed_tf(body: bytes, **kwargs: str) -> Send:
    return lambda r: post(r.url, "/hooks/tf", body, typeform_headers(body, **kwargs))


def _forged(r: Running) -> Answer:
    body = typeform_body("forged")
    forged = "sha256=" + b64(hashlib.sha256(body).digest())
    return post(r.url, "/hooks/tf", body, {"content-type": "application/json", "typeform-signature": forged})


def _timestamped(offset: int) -> Send:
    def send(r: Running) -> Answer:
        body = b'{"type": "form.submitted", "timestamp": "2026-01-01T00:00:00Z", "data": {}}'
        return post(r.url, "/hooks/sw", body, standard_headers(body, int(time.time()) + offset))

    return send


def _huge_timestamp(r: Running) -> Answer:
    body = b'{"type": "form.submitted", "data": {}}'
    return post(r.url, "/hooks/sw", body, standard_headers(body, "9" * 5000))


def _oversized_signature(size: int) -> Send:
    def send(r: Running) -> Answer:
        body = typeform_body("big-signature")
        return post(
            r.url,
            "/hooks/tf",
            body,
            {"content-type": "application/json", "typeform-signature": "sha256=" + "A" * size},
        )

    return send


def _unknown_source(r: Running) -> Answer:
    body = typeform_body("nobody")
    return post(r.url, "/hooks/no-such-source", body, typeform_headers(body))


def _form_unsigned(r: Running) -> Answer:
    form = {"content-type": "application/x-www-form-urlencoded"}
    return post(r.url, "/hooks/wufoo", form_fields(100_000), form)


def _multipart(token: bool) -> Send:
    def send(r: Running) -> Answer:
        boundary = "b"
        body = multipart_fields(100_000, boundary)
        query = "?" + urlencode({"token": TOKEN}) if token else ""
        content_type = f"multipart/form-data; boundary={boundary}"
        return post(r.url, "/hooks/jot" + query, body, {"content-type": content_type})

    return send


def _cl_te(r: Running) -> Answer:
    body = b"5\r\nhello\r\n0\r\n\r\n"
    request = head(
        "POST",
        "/hooks/tf",
        [("content-type", "application/json"), ("content-length", "5"), ("transfer-encoding", "chunked")],
    )
    return raw(r.server.port, [request + body])


def _raw_path(method: str, target: str, body: bytes = b"{}") -> Send:
    def send(r: Running) -> Answer:
        request = head(
            method, target, [("content-type", "application/json"), ("content-length", str(len(body)))]
        )
        return raw(r.server.port, [request + body])

    return send


def _repeated_header(count: int) -> Send:
    def send(r: Running) -> Answer:
        request = head("POST", "/hooks/tf", [("x-a", "b")] * count + [("content-length", "2")])
        return raw(r.server.port, [request + b"{}"])

    return send


def _distinct_headers(count: int) -> Send:
    def send(r: Running) -> Answer:
        return raw(r.server.port, [head("GET", "/healthz", [(f"x-h{i}", "v") for i in range(count)])])

    return send


def _one_big_header(size: int) -> Send:
    def send(r: Running) -> Answer:
        return raw(r.server.port, [head("GET", "/healthz", [("x-big", "v" * size)])])

    return send


def _trickled_head(r: Running) -> Answer:
    request = head("GET", "/healthz", [("x-slow", "v")])
    return raw(r.server.port, [request[i : i + 2] for i in range(0, len(request), 2)], pause=0.4)


def _trickled_body(r: Running) -> Answer:
    # A byte every 0.3 s: always within body_idle_timeout, never done within body_timeout.
    body = typeform_body("trickled")
    request = signed_head(body)
    return raw(r.server.port, [request] + [body[i : i + 1] for i in range(len(body))], pause=0.3)


def _stalled_body(r: Running) -> Answer:
    body = typeform_body("stalled")
    request = signed_head(body)
    return raw(r.server.port, [request + body[:10]])  # and then nothing


def _keep_alive(r: Running) -> Answer:
    started = time.monotonic()
    with httpx.Client(base_url=r.url, timeout=30) as client:
        statuses = set()
        for i in range(3):
            body = typeform_body(f"keep-alive-{i}")
            statuses.add(client.post("/hooks/tf", content=body, headers=typeform_headers(body)).status_code)
    return Answer(statuses.pop() if len(statuses) == 1 else 0, time.monotonic() - started)


def _large_signed(r: Running) -> Answer:
    # Head and a 60 KB body in one write, more than max_header_bytes together: the head alone is counted.
    body = json.dumps(
        {
            "event_id": "large",
            "event_type": "form_response",
            "form_response": {"form_id": "f1", "token": "large", "answers": [], "pad": "p" * 70_000},
        }
    ).encode()
    request = signed_head(body)
    return raw(r.server.port, [request + body])


CASES = [
    Case("forged signature", _forged, 401),
    Case("stale timestamp", _timestamped(-3600), 401, logged="timestamp outside tolerance"),
    Case("future timestamp", _timestamped(+3600), 401, logged="timestamp outside tolerance"),
    Case("webhook-timestamp of 5,000 digits", _huge_timestamp, 401),
    Case("oversized signature within the head limit", _oversized_signature(60_000), 401),
    Case("signature over the head limit", _oversized_signature(70_000), 431),
    Case("unknown source", _unknown_source, 401, logged="no source 'no-such-source' is configured"),
    Case(
        "invalid UTF-8, unsigned",
        lambda r: post(r.url, "/hooks/tf", b'\xff\xfe{"a": "\xc3"}', {"content-type": "application/json"}),
        401,
    ),
    Case("invalid UTF-8, signed: kept for the pipeline", _signed_tf(b'{"event_id": "\xff"}'), 200, stored=1),
    Case("100,000-level JSON nesting, signed", _signed_tf(nested_json(100_000)), 200, stored=1),
    Case(
        "100,000-level JSON nesting, unsigned",
        lambda r: post(r.url, "/hooks/tf", nested_json(100_000), {"content-type": "application/json"}),
        401,
    ),
    Case("100,000 urlencoded fields, no handshake key", _form_unsigned, 401),
    Case("100,000 multipart fields, no token", _multipart(token=False), 401),
    Case("100,000 multipart fields, with the token", _multipart(token=True), 200, stored=1, within=30),
    Case(
        "Content-Length with Transfer-Encoding",
        _cl_te,
        400,
        allow_warnings=["Invalid HTTP request received."],
    ),
    Case("/hooks/../healthz", _raw_path("POST", "/hooks/../healthz"), 404),
    Case("/hooks/tf/ (trailing slash)", _raw_path("POST", "/hooks/tf/"), 307),
    Case("/hooks/tf%2Fx", _raw_path("POST", "/hooks/tf%2Fx"), 404),
    Case("10,000-character source id", _raw_path("POST", "/hooks/" + "a" * 10_000), 401),
    Case("70,000-character path", _raw_path("POST", "/hooks/" + "a" * 70_000), 414),
    Case("GET on a hook", lambda r: post(r.url, "/hooks/tf", b"", {}, method="GET"), 405),
    Case(
        "PUT on a hook",
        lambda r: post(r.url, "/hooks/tf", b"{}", {"content-type": "application/json"}, method="PUT"),
        405,
    ),
    Case("DELETE on a hook", lambda r: post(r.url, "/hooks/tf", b"", {}, method="DELETE"), 405),
    Case("POST on /healthz", lambda r: post(r.url, "/healthz", b"{}", {}), 405),
    Case("wrong content type, signed", _signed_tf(typeform_body("text"), content_type="text/plain"), 415),
    Case(
        "wrong content type, unsigned: no hint",
        lambda r: post(r.url, "/hooks/tf", b"x", {"content-type": "text/plain"}),
        401,
    ),
    Case("400,000 repeats of one header", _repeated_header(400_000), 431, within=2.0),
    Case("10,000 distinct headers", _distinct_headers(10_000), 431, within=2.0),
    Case("101 headers", _distinct_headers(101), 431),
    Case("one 1 MiB header on /healthz", _one_big_header(1024 * 1024), 431, within=2.0),
    Case("trickled headers", _trickled_head, 408, within=HEADER_TIMEOUT + MARGIN),
    Case("trickled body", _trickled_body, 408, within=BODY_TIMEOUT + MARGIN),
    Case("stalled body", _stalled_body, 408, within=BODY_IDLE_TIMEOUT + MARGIN),
    Case("keep-alive: three signed requests on one connection", _keep_alive, 200, stored=3),
    Case("head and a 70 KB body in one write", _large_signed, 200, stored=1),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_request(running: Running, case: Case) -> None:
    before = running.stored()
    running.logs.records.clear()
    answer = case.send(running)
    assert answer.status == case.status, (answer.status, answer.body[:300])
    assert answer.seconds < case.within, f"answered after {answer.seconds:.1f} s"
    assert running.stored() - before == case.stored
    assert httpx.get(f"{running.url}/healthz", timeout=5).status_code == 200
    if answer.status in {401, 408, 413, 414, 415, 431}:  # the edge's own refusals: one shape
        assert set(json.loads(answer.body)) == {"error", "detail"}
    assert answer.status < 500
    _assert_clean_logs(running.logs.records, case.allow_warnings)
    if case.logged:
        reasons = [getattr(r, "reason", "") for r in running.logs.records]
        assert any(case.logged in reason for reason in reasons), reasons


def _assert_clean_logs(records: list[logging.LogRecord], allowed: list[str]) -> None:
    for record in records:
        assert record.exc_info is None, f"traceback logged: {record.getMessage()}"
        if record.levelno >= logging.WARNING and record.name.startswith("uvicorn"):
            assert record.getMessage() in allowed, record.getMessage()
        assert record.levelno < logging.ERROR, record.getMessage()


def test_unknown_source_answers_like_a_failed_verification(running: Running) -> None:
    unknown = _unknown_source(running)
    forged = _forged(running)
    assert unknown.status == forged.status == 401
    assert set(json.loads(unknown.body)) == set(json.loads(forged.body)) == {"error", "detail"}
    assert httpx.head(f"{running.url}/hooks/no-such-source").status_code == 200
    assert httpx.head(f"{running.url}/hooks/tf").status_code == 200


def test_idle_connections_up_to_the_cap_then_refused_and_closed(running: Running) -> None:
    running.logs.records.clear()
    wait_for(
        lambda: running.open_connections() == 0, timeout=HEADER_TIMEOUT + MARGIN, what="no open connections"
    )
    idle = [socket.create_connection(("127.0.0.1", running.server.port)) for _ in range(MAX_CONNECTIONS - 1)]
    try:
        wait_for(
            lambda: running.open_connections() == MAX_CONNECTIONS - 1, what="the idle connections to open"
        )
        # One slot left: /healthz still answers while idle connections pile up to the cap.
        assert httpx.get(f"{running.url}/healthz", timeout=5).status_code == 200
        idle.append(socket.create_connection(("127.0.0.1", running.server.port)))
        wait_for(lambda: running.open_connections() == MAX_CONNECTIONS, what="the cap to be reached")
        refused = raw(running.server.port, [head("GET", "/healthz", [])], timeout=5)
        assert refused.status == 503
        warnings = [
            r
            for r in running.logs.records
            if r.levelno == logging.WARNING and getattr(r, "event", "") == "connection_cap"
        ]
        assert warnings and "connection cap reached" in warnings[0].getMessage()
        # The idle connections send nothing: the header timeout closes them, and the hub answers again.
        started = time.monotonic()
        for sock in idle:
            sock.settimeout(HEADER_TIMEOUT + MARGIN)
            assert sock.recv(1) == b""  # closed by the hub, without an answer
        assert time.monotonic() - started < HEADER_TIMEOUT + MARGIN
    finally:
        for sock in idle:
            sock.close()
    assert httpx.get(f"{running.url}/healthz", timeout=5).status_code == 200
    _assert_clean_logs(running.logs.records, [])


def test_cap_warning_is_rate_limited(running: Running) -> None:
    from hub.receiver.protocol import CAP_LOG

    running.logs.records.clear()
    idle = [socket.create_connection(("127.0.0.1", running.server.port)) for _ in range(MAX_CONNECTIONS)]
    try:
        wait_for(lambda: running.open_connections() == MAX_CONNECTIONS, what="the cap to be reached")
        for _ in range(5):
            assert raw(running.server.port, [head("GET", "/healthz", [])], timeout=5).status == 503
    finally:
        for sock in idle:
            sock.close()
    lines = [r for r in running.logs.records if getattr(r, "event", "") == "connection_cap"]
    assert len(lines) <= 1 and CAP_LOG.interval >= 1  # five refusals, at most one line


def test_a_refused_connection_is_closed_after_the_linger(running: Running) -> None:
    """After a 431 the hub drains for a while, then closes even if the client never does."""
    from hub.receiver.protocol import LINGER_SECONDS

    sock = socket.create_connection(("127.0.0.1", running.server.port), timeout=LINGER_SECONDS + MARGIN)
    try:
        sock.sendall(head("GET", "/healthz", [(f"x-h{i}", "v") for i in range(200)]))
        received = b""
        started = time.monotonic()
        while chunk := sock.recv(65536):  # the answer, then the end of the stream
            received += chunk
        assert received.startswith(b"HTTP/1.1 431 ")
        assert time.monotonic() - started < LINGER_SECONDS + MARGIN
    finally:
        sock.close()
