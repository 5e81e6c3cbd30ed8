"""Shared by the console tests: a config with every kind of secret, a served hub, a logged-in client."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from hub.console.passwords import hash_password
from hub.runtime import ConfigHolder, prepare_sources

PASSWORD = "correct horse battery staple"
PASSWORD_HASH = hash_password(PASSWORD, n=2**14)  # the smallest cost parse() accepts: fast tests
SECRETS = {
    "source": "whsec_" + "c2VjcmV0LXNpZ25pbmcta2V5LWZvci10aGUtY29uc29sZQ==",
    "crm": "whsec_" + "Y3JtLXNlY3JldC1mb3ItdGhlLWNvbnNvbGUtdGVzdHMh",
    "status": "status-token-0123456789abcdef",
    "admin_token": "admin-token-0123456789abcdef",
    "secret_key": "k" * 40,
    "slack": "http://127.0.0.1:9/services/T0SECRET/B0SECRET/xoxsecretpath",
}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def config_text(admin: bool = True, crm_url: str = "http://127.0.0.1:9/crm", extra: str = "") -> str:
    admin_block = (
        f"admin:\n  password_hash: ${{HASH}}\n  token: {SECRETS['admin_token']}\n"
        f"  secret_key: {SECRETS['secret_key']}\n"
        if admin
        else ""
    )
    return f"""
sources:
  demo:
    provider: standard_webhooks
    secret: {SECRETS["source"]}
destinations:
  crm:
    type: webhook
    url: {crm_url}
    secret: {SECRETS["crm"]}
  team-slack:
    type: slack
    webhook_url: {SECRETS["slack"]}
routes:
  - name: all
    from: [demo]
    to: [crm]
server:
  status_token: {SECRETS["status"]}
{admin_block}{extra}"""


def write(path: Path, **kwargs: object) -> Path:
    path.write_text(config_text(**kwargs), encoding="utf-8")  # type: ignore[arg-type]
    return path


ENVIRON = {"HASH": PASSWORD_HASH}


def post_sample(holder: ConfigHolder, base_url: str, count: int = 1) -> list[str]:
    """Signed sample submissions through the real receiver; their ids."""
    source = prepare_sources(holder.current)["demo"]
    url = f"{base_url}/hooks/demo"
    ids = []
    with httpx.Client(timeout=30) as client:
        for _ in range(count):
            request = source.connector.sample_request(source.config, url, time.time())
            answer = client.post(url, content=request.body, headers=dict(request.headers))
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["id"])
    return ids


def log_in(client: httpx.Client, password: str = PASSWORD, **headers: str) -> httpx.Response:
    form = client.get("/admin/login")
    token = CSRF.search(form.text)
    assert token, form.text
    return client.post(
        "/admin/login",
        data={"csrf": token.group(1), "password": password, "next": "/admin/"},
        headers=headers,
    )


def csrf_of(client: httpx.Client, path: str = "/admin/") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    match = CSRF.search(page.text)
    assert match
    return match.group(1)
