"""Console access: off without a credential, every route behind a session, CSRF, cookie flags,
throttled logins, no configured secret on any page. A real hub on loopback (tests/harness.py)."""

from __future__ import annotations

import html
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from hub.console.app import LOGIN, PREFIX, console_app, routes_for
from hub.console.context import Console
from hub.runtime import ConfigHolder
from hub.server import Hub
from tests.harness import FakeClock, RunningServer, serve_app, start_hub
from tests.test_console_support import (
    ENVIRON,
    PASSWORD,
    PASSWORD_HASH,
    SECRETS,
    csrf_of,
    log_in,
    post_sample,
    write,
)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[Hub, RunningServer]]:
    running = start_hub(write(tmp_path / "c.yaml"), tmp_path / "data", environ=ENVIRON)
    yield running
    running[1].stop()


def client_for(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30, follow_redirects=False)


def test_console_is_off_until_a_credential_is_configured(tmp_path: Path) -> None:
    _, server = start_hub(write(tmp_path / "c.yaml", admin=False), tmp_path / "data")
    try:
        with client_for(server) as client:
            for path in ("/admin/", "/admin/login", "/admin/submissions", "/submissions/01ABC"):
                answer = client.get(path)
                assert answer.status_code == 404, path
                assert "admin.password_hash" in answer.text and "hash-password" in answer.text
            assert client.post("/admin/login", data={"password": "x"}).status_code == 404
    finally:
        server.stop()


def _console_routes() -> list[Route]:
    holder = ConfigHolder(Path("connectors.yaml"))
    mount = next(
        r for r in routes_for(Console(holder, Path("/nonexistent/spool.db"))) if isinstance(r, Mount)
    )
    app = mount.app
    assert isinstance(app, Starlette)
    return [r for r in app.routes if isinstance(r, Route)]


def test_every_console_route_needs_a_session(hub: tuple[Hub, RunningServer]) -> None:
    _, server = hub
    routes = _console_routes()
    assert len(routes) >= 10  # the table is read, not a hand list: a new page is checked too
    with client_for(server) as client:
        for route in routes:
            path = PREFIX + re.sub(r"\{[^}]+\}", "x", route.path)
            for method in sorted(route.methods or ()):
                if method == "HEAD":
                    continue
                answer = client.request(method, path, data={"csrf": "forged"} if method == "POST" else None)
                if route.path == LOGIN:
                    # The login form itself; its POST still needs the form's own token.
                    assert answer.status_code == (200 if method == "GET" else 403), (method, path)
                elif method == "GET":
                    assert answer.status_code == 303, (method, path, answer.status_code)
                    assert answer.headers["location"].startswith(f"{PREFIX}/login?next="), path
                else:
                    assert answer.status_code == 401, (method, path, answer.status_code)
        # The message links' redirect leads to the same login.
        link = client.get("/submissions/01ABC")
        assert link.status_code == 303 and link.headers["location"] == "/admin/submissions/01ABC"


def test_view_in_hookhub_link_lands_on_the_submission_after_login(hub: tuple[Hub, RunningServer]) -> None:
    running, server = hub
    [inbox_id] = post_sample(running.config, server.url)
    with client_for(server) as client:
        to_console = client.get(f"/submissions/{inbox_id}")
        to_login = client.get(to_console.headers["location"])
        assert to_login.status_code == 303
        form = client.get(to_login.headers["location"])
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        nxt = re.search(r'name="next" value="([^"]+)"', form.text)
        assert csrf and nxt and nxt.group(1) == f"/admin/submissions/{inbox_id}"
        answer = client.post(
            "/admin/login", data={"csrf": csrf.group(1), "password": PASSWORD, "next": nxt.group(1)}
        )
        assert answer.status_code == 303 and answer.headers["location"] == f"/admin/submissions/{inbox_id}"
        page = client.get(answer.headers["location"])
        assert page.status_code == 200 and inbox_id in page.text


def test_login_never_redirects_off_the_console(hub: tuple[Hub, RunningServer]) -> None:
    _, server = hub
    for target in ("https://evil.example/", "//evil.example/admin/", "/hooks/demo", "/admin/../hooks/demo"):
        with client_for(server) as client:
            form = client.get("/admin/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert csrf
            data = {"csrf": csrf.group(1), "password": PASSWORD, "next": target}
            answer = client.post("/admin/login", data=data)
            assert answer.headers["location"] == "/admin/", target


def test_state_changing_requests_need_the_sessions_csrf_token(hub: tuple[Hub, RunningServer]) -> None:
    running, server = hub
    with client_for(server) as client:
        assert log_in(client).status_code == 303
        token = csrf_of(client)
        for data in ({}, {"csrf": "wrong"}, {"csrf": token[:-1] + ("A" if token[-1] != "A" else "B")}):
            answer = client.post("/admin/destinations/crm/pause", data=data)
            assert answer.status_code == 403, data
        assert _paused(running) == set()
        assert client.post("/admin/destinations/crm/pause", data={"csrf": token}).status_code == 303
        assert _paused(running) == {"crm"}
        # Another login's token does not fit this session.
        with client_for(server) as other:
            log_in(other)
            foreign = csrf_of(other)
        assert foreign != token
        assert client.post("/admin/destinations/crm/resume", data={"csrf": foreign}).status_code == 403
        assert _paused(running) == {"crm"}


def _paused(running: Hub) -> set[str]:
    conn = sqlite3.connect(running.spool_path)
    try:
        return {row[0] for row in conn.execute("SELECT destination FROM paused_destinations")}
    finally:
        conn.close()


def session_cookie(response: httpx.Response) -> str:
    [cookie] = [c for c in response.headers.get_list("set-cookie") if c.startswith("hookhub_session=")]
    return cookie


def test_session_cookie_flags(hub: tuple[Hub, RunningServer]) -> None:
    _, server = hub
    with client_for(server) as client:
        cookie = session_cookie(log_in(client))
        flags = {part.strip().lower() for part in cookie.split(";")}
        assert {"httponly", "samesite=strict", "path=/admin"} <= flags
        assert "secure" not in flags  # plain http on loopback, no proxy header
    with client_for(server) as client:
        # A proxy on a trusted address (loopback by default) says the client used https.
        cookie = session_cookie(log_in(client, **{"X-Forwarded-Proto": "https"}))
        assert "secure" in {part.strip().lower() for part in cookie.split(";")}


def test_forwarded_proto_from_an_untrusted_peer_is_ignored(tmp_path: Path) -> None:
    holder = ConfigHolder(write(tmp_path / "c.yaml"), environ=ENVIRON)
    hub = Hub(config=holder, data_dir=tmp_path / "data", watch_config=False)
    server = serve_app(hub.app(), forwarded_allow_ips="")  # no proxy is trusted
    try:
        with client_for(server) as client:
            cookie = session_cookie(log_in(client, **{"X-Forwarded-Proto": "https"}))
            assert "secure" not in {part.strip().lower() for part in cookie.split(";")}
    finally:
        server.stop()


def test_failed_logins_are_throttled_per_client_and_overall(tmp_path: Path) -> None:
    holder = ConfigHolder(write(tmp_path / "c.yaml"), environ=ENVIRON)
    clock = FakeClock(1_800_000_000.0)
    console = Console(holder, tmp_path / "data" / "spool.db", clock=clock)
    (tmp_path / "data").mkdir()
    server = serve_app(Starlette(routes=[Mount(PREFIX, app=console_app(console))]))
    try:
        with client_for(server) as client:
            for _ in range(5):
                assert log_in(client, password="wrong").status_code == 401
            refused = log_in(client)  # the right password, too soon
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) == 900
            clock.now += 899
            assert log_in(client).status_code == 429
            clock.now += 2
            assert log_in(client).status_code == 303
        with client_for(server) as client:
            # Overall: many clients (a trusted proxy names them) share one limit.
            for n in range(50):
                assert (
                    log_in(client, password="wrong", **{"X-Forwarded-For": f"198.51.100.{n}"}).status_code
                    == 401
                )
            assert log_in(client, **{"X-Forwarded-For": "203.0.113.7"}).status_code == 429
    finally:
        server.stop()


def test_no_configured_secret_appears_on_any_page(hub: tuple[Hub, RunningServer]) -> None:
    running, server = hub
    ids = post_sample(running.config, server.url, 2)
    _dead_with_an_echoed_secret(running.spool_path, ids[0])
    shown = {**SECRETS, "password": PASSWORD, "hash": PASSWORD_HASH}
    pages = ["/admin/", "/admin/submissions", "/admin/deadletters", "/admin/destinations"]
    pages += [f"/admin/submissions/{i}" for i in ids]
    pages += ["/admin/submissions?source=demo", "/admin/deadletters?destination=crm"]
    with client_for(server) as anonymous:
        texts = {"/admin/login": anonymous.get("/admin/login").text}
    with client_for(server) as client:
        log_in(client)
        for path in pages:
            answer = client.get(path)
            assert answer.status_code == 200, path
            texts[path] = answer.text
    for shown_at in (f"/admin/submissions/{ids[0]}", "/admin/", "/admin/destinations", "/admin/deadletters"):
        assert "[redacted]" in texts[shown_at], shown_at  # the echoed secret was there, masked
    for path, text in texts.items():
        for name, secret in shown.items():
            assert secret not in text and html.escape(secret) not in text, (path, name)


def _dead_with_an_echoed_secret(spool: Path, inbox_id: str) -> None:
    """A delivery whose error echoes a configured secret, as a careless receiver's answer might."""
    conn = sqlite3.connect(spool)
    try:
        error = f"HTTP 400: bad signature for {SECRETS['crm']} at {SECRETS['slack']}"
        with conn:
            conn.execute(
                "INSERT INTO deliveries (inbox_id, destination, route, status, attempts, next_attempt_at,"
                " last_error, last_status_code, last_attempt_at, created_at, updated_at)"
                " VALUES (?, 'crm', 'all', 'dead', 1, 0, ?, 400, 1, 0, 0)",
                (inbox_id, error),
            )
            conn.execute(
                "INSERT INTO attempts (inbox_id, destination, attempt, at, outcome, status_code, error)"
                " VALUES (?, 'crm', 1, 0, 'dead', 400, ?)",
                (inbox_id, error),
            )
            conn.execute("UPDATE inbox SET state = 'failed' WHERE id = ?", (inbox_id,))
    finally:
        conn.close()
