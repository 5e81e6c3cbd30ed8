"""The Gravity Forms REST API v2 on the WordPress site, for reconciliation (connectors/reconciling).

The API facts relied on, with their sources and what is unconfirmed: docs/providers/gravity_forms.md,
"Reconciliation (missed webhooks)". A listed entry is rebuilt as the "All Fields" webhook body and
normalized by the connector itself, so both paths give the same answers.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, ClassVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from connectors import _answers
from connectors.base import InboundRequest, NormalizeContext, SourceSettings
from connectors.reconciling import (
    Read,
    ReconcileFailed,
    Reconciler,
    ReconcileSettings,
    ResponsePage,
    WebhookHealth,
    Window,
    bare_url,
    checked_base_url,
    checked_id,
    checked_zone,
    get_json,
    list_in,
    page_of,
    read_response,
    same_endpoint,
    secret_text,
    url_health,
)
from hub.submission import Submission, parse_instant

if TYPE_CHECKING:
    from hub.sender import Sender

from connectors import gravity_forms

API_PATH = "/wp-json/gf/v2"
PAGE_SIZE = 100
"""`paging[page_size]` (the API's default is 10 and it states no maximum)."""
WEBHOOKS_ADDON = "gravityformswebhooks"
"""The Webhooks Add-On's slug: its feeds' `addon_slug`."""
_FORM_ID = re.compile(r"[0-9]+")
_ANY_ZONE = timedelta(hours=14)
"""`start_date`/`end_date` are read in the site's time zone: without `timezone`, the asked range is
widened by the largest UTC offset there is, so that it holds the window whatever the zone."""
_ZONE_SLACK = timedelta(hours=1)
"""With `timezone`: room for a daylight-saving hour read the other way round."""
_STAMP = "%Y-%m-%d %H:%M:%S"
_CONSUMER_KEY = re.compile(r"ck_[A-Za-z0-9]{20,64}")
_CONSUMER_SECRET = re.compile(r"cs_[A-Za-z0-9]{20,64}")
_APP_PASSWORD = re.compile(r"[A-Za-z0-9]{24}")
_APP_PASSWORD_SHOWN = re.compile(r"(?:[A-Za-z0-9]{4} ){5}[A-Za-z0-9]{4}")
"""How WordPress shows an application password: six groups of four."""
_HOW_TO_ADD = "add a Webhooks feed (the form's Settings > Webhooks > Add New) or activate the one turned off"


def _shaped(value: SecretStr, name: str, shape: re.Pattern[str], hint: str, env_hint: str) -> SecretStr:
    text = secret_text(value, name, env_hint)
    if not shape.fullmatch(text):
        raise ValueError(f"{name} must be {hint}")
    return SecretStr(text)


class GravityFormsCredentials(BaseModel):
    """A Gravity Forms REST API key (consumer key and secret) or a WordPress application password
    (user name and password), sent with Basic authentication."""

    model_config = ConfigDict(extra="forbid")

    consumer_key: SecretStr | None = Field(default=None, description="ck_... (Forms > Settings > REST API)")
    consumer_secret: SecretStr | None = Field(default=None, description="cs_... shown with the key")
    username: str | None = Field(default=None, description="the WordPress user of an application password")
    application_password: SecretStr | None = Field(
        default=None, description="a WordPress application password (Users > Profile)"
    )

    @field_validator("consumer_key")
    @classmethod
    def _key(cls, value: SecretStr | None) -> SecretStr | None:
        hint = (
            "a Gravity Forms REST API consumer key, ck_ and letters or digits (Forms > Settings > REST API)"
        )
        return (
            None
            if value is None
            else _shaped(value, "credentials.consumer_key", _CONSUMER_KEY, hint, "GF_CONSUMER_KEY")
        )

    @field_validator("consumer_secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        hint = "the consumer secret shown with the key, cs_ and letters or digits"
        return (
            None
            if value is None
            else _shaped(value, "credentials.consumer_secret", _CONSUMER_SECRET, hint, "GF_CONSUMER_SECRET")
        )

    @field_validator("username")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip()
        if not text or ":" in text or "${" in text:
            raise ValueError("credentials.username must be the WordPress user name (no ':' and not empty)")
        return text

    @field_validator("application_password")
    @classmethod
    def _password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value().strip()
        if _APP_PASSWORD_SHOWN.fullmatch(text):  # copied as WordPress shows it
            text = text.replace(" ", "")
        hint = (
            "a WordPress application password: 24 letters and digits (spaced as WordPress shows it is fine)"
        )
        return _shaped(
            SecretStr(text), "credentials.application_password", _APP_PASSWORD, hint, "GF_APP_PASSWORD"
        )

    @model_validator(mode="after")
    def _one_pair(self) -> GravityFormsCredentials:
        key = (self.consumer_key is not None, self.consumer_secret is not None)
        app = (self.username is not None, self.application_password is not None)
        if any(key) and any(app):
            raise ValueError(
                "credentials take either consumer_key and consumer_secret or username and "
                "application_password, not both"
            )
        if all(key) or all(app):
            return self
        raise ValueError(
            "credentials need consumer_key and consumer_secret (a Gravity Forms REST API key: Forms > "
            "Settings > REST API > Add Key) or username and application_password (a WordPress "
            "application password: Users > Profile)"
        )

    def authorization(self) -> str:
        """The Basic `Authorization` header value."""
        if self.consumer_key is not None and self.consumer_secret is not None:
            user, password = self.consumer_key.get_secret_value(), self.consumer_secret.get_secret_value()
        else:
            assert self.username is not None and self.application_password is not None
            user, password = self.username, self.application_password.get_secret_value()
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class GravityFormsReconcileSettings(ReconcileSettings):
    form_id: Annotated[
        str, checked_id(_FORM_ID, "the form's id: the number in Forms > Forms (ID column)", before=True)
    ] = Field(min_length=1, description="the form's id (Forms > Forms, the ID column)", examples=["3"])
    credentials: GravityFormsCredentials = Field(
        examples=[{"consumer_key": "${GF_CONSUMER_KEY}", "consumer_secret": "${GF_CONSUMER_SECRET}"}]
    )
    api_base_url: Annotated[str, checked_base_url("https://www.example.org", API_PATH, "/wp-json")] = Field(
        description="the WordPress site's address, https://www.example.org (its REST API is under /wp-json)",
        examples=["https://www.example-shop.de"],
    )
    timezone: Annotated[
        str | None, checked_zone("Europe/Berlin or UTC (the site's, as set under Settings > General)")
    ] = Field(
        default=None,
        description="the site's time zone (Settings > General), an IANA name: saves listing 14 hours either"
        " side of each window",
    )
    webhook_check: bool = Field(
        default=True,
        description="list the Webhooks Add-On's feeds for the webhook check (the user needs"
        " gravityforms_edit_forms)",
    )


def _php_json(value: Any) -> str:
    """`value` encoded as PHP's json_encode does by default (ASCII, `\\/`), as Gravity Forms stores it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/")


def _listed_submission(entry: dict[str, Any], at: datetime) -> Submission:
    """The listed entry as the "All Fields" webhook sends it, normalized by the connector itself. The
    API decodes the JSON it stores for multi-file uploads, multi-selects and lists; the webhook sends the
    stored strings: encode them again."""
    body = {k: _php_json(v) if isinstance(v, (list, dict)) else v for k, v in entry.items()}
    request = InboundRequest("GET", "", {"content-type": "application/json"}, json.dumps(body).encode())
    return gravity_forms.connector.normalize(request, NormalizeContext("pending", "pending", at))


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _is_active(feed: dict[str, Any]) -> bool:
    # The API lists active feeds only (GFAPI::get_feeds' default); a version that also lists inactive
    # ones says so in `is_active`.
    return feed.get("is_active", True) not in (False, 0, "0", "")


def _feed_url(feed: dict[str, Any]) -> str:
    url = _answers.maybe_obj(feed, "meta").get("requestURL")
    return url if isinstance(url, str) else ""


def _feed_health(feeds: list[dict[str, Any]], form_id: str, expected_url: str | None) -> WebhookHealth:
    where = f"Gravity Forms form {form_id}"
    health = url_health([_feed_url(f) for f in feeds if _is_active(f)], expected_url, where, _HOW_TO_ADD)
    off = [_feed_url(f) for f in feeds if not _is_active(f)]
    if health.state == "ok" or not off:
        return health
    if expected_url is None or any(same_endpoint(u, expected_url) for u in off):
        to = f" to {bare_url(expected_url)}" if expected_url else ""
        return WebhookHealth(
            "disabled",
            f"{where}: its Webhooks feed{to} is inactive (activate it in the form's Settings > Webhooks)",
        )
    return health


class GravityFormsReconciler(Reconciler):
    """`GET /wp-json/gf/v2/forms/{id}/entries` (active entries, by id, page by page) and
    `GET /wp-json/gf/v2/feeds?addon=gravityformswebhooks` for the webhook check."""

    Settings: ClassVar[type[ReconcileSettings]] = GravityFormsReconcileSettings
    page_size: ClassVar[int] = PAGE_SIZE
    api: ClassVar[str] = "Gravity Forms REST API v2"

    def _call(self, settings: GravityFormsReconcileSettings) -> dict[str, Any]:
        return {
            "headers": {"authorization": settings.credentials.authorization(), "accept": "application/json"},
            "sleep": self.sleep,
            "denied": "the WordPress site refused the credentials (a revoked REST API key or application "
            "password, a user without the gravityforms_view_entries capability, or the REST API turned off "
            "under Forms > Settings > REST API): put working ones in reconcile.credentials",
            "not_found": "the site has no Gravity Forms REST API v2 there: check reconcile.api_base_url (the "
            "WordPress address; pretty permalinks must be on) and that the REST API is enabled (Forms > "
            "Settings > REST API)",
        }

    async def responses(
        self, source: SourceSettings, settings: Any, window: Window, http: Sender
    ) -> AsyncIterator[ResponsePage]:
        assert isinstance(settings, GravityFormsReconcileSettings)
        form = settings.form_id
        zone = ZoneInfo(settings.timezone) if settings.timezone else None
        slack = _ZONE_SLACK if zone else _ANY_ZONE
        local = zone or UTC
        search = {
            "status": "active",  # never trash or spam
            "start_date": (window.since - slack).astimezone(local).strftime(_STAMP),
            "end_date": (window.until + slack).astimezone(local).strftime(_STAMP),
        }
        query = {
            "search": json.dumps(search),
            "paging[page_size]": str(PAGE_SIZE),
            "sorting[key]": "id",
            "sorting[direction]": "ASC",
            "sorting[is_numeric]": "true",
        }
        seen: set[str] = set()
        page = 1
        while True:
            what = f"list entries of Gravity Forms form {form} (page {page})"
            body = await get_json(
                http,
                f"{settings.api_base_url}{API_PATH}/forms/{form}/entries",
                what=what,
                params={**query, "paging[current_page]": str(page)},
                **self._call(settings),
            )
            entries = list_in(body, "entries", what)
            read: list[Read] = []
            for entry in entries:
                response = self._listed(entry, what)
                if (
                    response is not None
                    and response.response_id not in seen
                    and window.since <= response.submitted_at < window.until
                ):
                    seen.add(response.response_id)
                    read.append(response)
            total = _count(body.get("total_count"))
            yield page_of(read, total)
            if len(entries) < PAGE_SIZE or (total is not None and page * PAGE_SIZE >= total):
                return
            page += 1

    @staticmethod
    def _listed(entry: Any, what: str) -> Read | None:
        if not isinstance(entry, dict):
            raise ReconcileFailed(f"{what}: an entry is not an object")
        if entry.get("status") not in (None, "", "active"):
            return None  # trash, spam (or partial): never a submission the webhook owed
        eid, created = _answers.key(entry.get("id")), entry.get("date_created")
        if eid is None or isinstance(eid, bool) or not str(eid) or not isinstance(created, str):
            raise ReconcileFailed(f"{what}: an entry has no id or date_created")
        try:
            at = parse_instant(created)  # UTC "YYYY-MM-DD HH:MM:SS"
        except (ValueError, OverflowError):
            raise ReconcileFailed(f"{what}: entry {eid} has an unreadable date_created") from None
        return read_response(str(eid), at, partial(_listed_submission, entry, at))

    async def webhook_health(
        self, source: SourceSettings, settings: Any, expected_url: str | None, http: Sender
    ) -> WebhookHealth | None:
        assert isinstance(settings, GravityFormsReconcileSettings)
        if not settings.webhook_check:
            return None
        what = "list the Webhooks Add-On's feeds"
        call = self._call(settings) | {
            "denied": "the WordPress site refused to list add-on feeds: the credentials' user needs the "
            "gravityforms_edit_forms capability (or set reconcile.webhook_check: false)",
        }
        body = await get_json(
            http,
            f"{settings.api_base_url}{API_PATH}/feeds",
            what=what,
            params={"addon": WEBHOOKS_ADDON},
            **call,
        )
        if isinstance(body, dict) and "errors" in body:
            feeds: list[Any] = []  # GFAPI's "Feed not found" error, answered with HTTP 200: no active feed
        elif isinstance(body, list):
            feeds = body
        else:
            raise ReconcileFailed(f"{what}: the answer is not a list of feeds")
        ours = [f for f in feeds if isinstance(f, dict) and str(f.get("form_id")) == settings.form_id]
        return _feed_health(ours, settings.form_id, expected_url)
