"""Pydantic models of connectors.yaml.

Key names are part of the user-facing contract (see README). Every model forbids
unknown keys so a typo is an error with a position instead of a silently ignored
setting.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from hub.alerts.durations import Duration
from hub.config.alert_models import AlertKind as AlertKind
from hub.config.alert_models import AlertRuleConfig as AlertRuleConfig
from hub.config.alert_models import AlertRules as AlertRules
from hub.config.alert_models import AlertsConfig as AlertsConfig
from hub.config.strict import Strict
from hub.console import passwords

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024


def _set_by_loader(value: BaseModel | None, what: str) -> BaseModel:
    """What the loader validated with the provider's or type's own model after this one."""
    if value is None:
        raise RuntimeError(f"{what} are set by hub.config.loader; load configs through it")
    return value


DAY = 86400.0


class RetentionPeriods(Strict):
    """How long stored requests keep personal data (hub/spool/retention.py; README "Privacy")."""

    # At least an hour: a bare number is seconds, and `raw_requests: 30` meaning days would
    # otherwise empty every request half a minute after it was delivered.
    raw_requests: Duration | None = Field(
        default=None,
        ge=3600,
        description="After this, a settled request's body, headers and URL are emptied (ids and states"
        " stay). A duration such as 30d or seconds; at least 1h.",
        examples=["30d"],
    )
    submissions: Duration | None = Field(
        default=None,
        ge=3600,
        description="After this, a settled submission is removed with its deliveries and attempts. A"
        " duration such as 365d or seconds; at least 1h.",
        examples=["365d"],
    )


class RetentionConfig(RetentionPeriods):
    """`retention:`: periods for every source (each may override them), enforced by the upkeep."""

    raw_requests: Duration | None = Field(
        default=30 * DAY,
        ge=3600,
        description="After this, a settled request's body, headers and URL are emptied (ids and states"
        " stay); null: never. Default 30d; a source's `retention:` may override it.",
    )
    submissions: Duration | None = Field(
        default=365 * DAY,
        ge=3600,
        description="After this, a settled submission is removed with its deliveries and attempts; null:"
        " never. Default 365d; a source's `retention:` may override it.",
    )
    flow_runs: Duration | None = Field(
        default=30 * DAY, ge=3600, description="hookhub's Prefect flow runs that ended longer ago are deleted"
    )
    every: Duration = Field(default=3600.0, ge=60, description="how often the periods are enforced")
    batch_size: int = Field(default=500, ge=1, le=10_000, description="rows per transaction")

    def periods_of(self, source: SourceConfig | None) -> RetentionPeriods:
        """The periods for one source: its own where it sets them, else these."""
        own = source.retention if source is not None else None
        fields = own.model_fields_set if own is not None else set()
        return RetentionPeriods(
            raw_requests=own.raw_requests
            if own is not None and "raw_requests" in fields
            else self.raw_requests,
            submissions=own.submissions if own is not None and "submissions" in fields else self.submissions,
        )


class SourceConfig(BaseModel):
    """One webhook URL: POST /hooks/<source id>.

    Keys beyond the common ones below belong to the provider's scheme (the keys of a
    fixture's `verify_config`); the loader validates them against the connector's
    `Options` model and stores the result in `options`.
    """

    model_config = ConfigDict(extra="allow")

    provider: str
    secret: str | list[str] | None = Field(
        default=None, description="signing secret or token; a list accepts any of them (rotation)"
    )
    tolerance: int = Field(default=300, ge=1, description="seconds, for schemes with a timestamp")
    public_url: str | None = Field(
        default=None, description="the exact URL registered with the provider, for schemes that sign it"
    )
    max_body_bytes: int | None = Field(default=None, ge=1, description="overrides server.max_body_bytes")
    description: str | None = Field(
        default=None,
        description="A note for whoever reads this file (which form, who owns it); hookhub does not use it.",
        examples=["Contact form on www.example.com (marketing team)"],
    )
    expect_every: Duration | None = Field(
        default=None, description="alert when no submission arrived for this long (e.g. 6h)"
    )
    retention: RetentionPeriods | None = Field(default=None, description="overrides the `retention:` periods")
    reconcile: dict[str, Any] | None = Field(
        default=None,
        description="list the form's responses through the provider's API and store those whose webhook"
        " never arrived (keys: every, lookback, settle, and the provider's: credentials, form id)",
    )
    _options: BaseModel | None = PrivateAttr(default=None)
    _reconcile: BaseModel | None = PrivateAttr(default=None)

    @property
    def options(self) -> BaseModel:
        return _set_by_loader(self._options, "source options")

    @property
    def reconcile_settings(self) -> Any:
        """The provider's validated `reconcile:` (connectors.reconciling.ReconcileSettings), or None."""
        if self.reconcile is None:
            return None
        return _set_by_loader(self._reconcile, "reconcile settings")

    @property
    def secrets(self) -> list[str]:
        if self.secret is None:
            return []
        if isinstance(self.secret, str):
            return [self.secret]
        return list(self.secret)

    @field_validator("secret")
    @classmethod
    def _non_empty(cls, value: str | list[str] | None) -> str | list[str] | None:
        values = [value] if isinstance(value, str) else (value or [])
        if any(not v for v in values):
            raise ValueError("a secret must not be empty (is an environment variable unset?)")
        if isinstance(value, list) and not value:
            raise ValueError("the list of secrets is empty")
        return value


class DestinationConfig(BaseModel):
    """A delivery target; `type` picks the destination module whose `Config` validates the rest."""

    model_config = ConfigDict(extra="allow")

    type: str
    _settings: BaseModel | None = PrivateAttr(default=None)

    @property
    def settings(self) -> BaseModel:
        return _set_by_loader(self._settings, "destination settings")


class RouteTarget(Strict):
    """A destination in a route, optionally with its own template or field mapping."""

    destination: str = Field(description="Id of a destination under `destinations:`.", examples=["crm"])
    template: str | None = Field(
        default=None,
        description="Jinja template that replaces the destination's own for this route: Slack's message"
        " text, an e-mail's plain-text body, HubSpot's note, Pipedrive's title.",
    )
    map: dict[str, str] | None = Field(
        default=None,
        description="Target field -> Jinja template over the submission, for CRM and e-mail destinations;"
        " replaces the destination's `map` for this route.",
    )


class RouteConfig(Strict):
    name: str = Field(
        description="Unique name of the route, for `hookhub test-route`, `hookhub backfill --route` and"
        " `hookhub show` (which routes matched).",
        examples=["all-leads"],
    )
    from_: list[str] = Field(
        alias="from",
        min_length=1,
        description='Source ids this route takes submissions from, or "*" for every source; one id may'
        " be written without the list.",
        examples=[["contact-form"], ["*"]],
    )
    when: str | None = Field(
        default=None,
        description="Condition over the submission (README, Conditions); the route applies only where it"
        " is true. Unset: to every submission.",
        examples=["answers['Email'] contains '@'", "answers['How many tickets?'] > 2"],
    )
    to: list[str | RouteTarget] = Field(
        min_length=1,
        description="Destination ids to deliver to; an entry may be {destination, map, template} to give"
        " that destination this route's own mapping.",
        examples=[["crm", "sales-slack"], [{"destination": "crm", "map": {"email": "{{ email | lower }}"}}]],
    )
    backfill: bool = Field(
        default=False,
        description="also deliver submissions brought in by `hookhub import` (a form's history); off so"
        " that adding a source does not flood a CRM by surprise",
    )

    @field_validator("from_", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def destination_ids(self) -> list[str]:
        return [t if isinstance(t, str) else t.destination for t in self.to]

    def matches_source(self, source_id: str) -> bool:
        return "*" in self.from_ or source_id in self.from_


class ServerConfig(Strict):
    max_body_bytes: int = Field(
        default=DEFAULT_MAX_BODY_BYTES,
        ge=1,
        description="Largest request body in bytes, chunked bodies too; larger ones get 413. A source's"
        " max_body_bytes overrides it.",
    )
    public_base_url: str | None = Field(
        default=None, description="how providers reach this hub, for links in messages and send-test"
    )
    status_token: str | None = Field(
        default=None,
        min_length=16,
        description="bearer token that shows /readyz details and /metrics to non-loopback callers",
    )
    # HTTP-layer limits (hub/receiver/protocol.py), read at start.
    max_connections: int = Field(default=1000, ge=1, description="open connections; more are refused (503)")
    max_header_bytes: int = Field(default=64 * 1024, ge=1024, description="request line and headers (431)")
    max_headers: int = Field(default=100, ge=10, le=10_000, description="request header fields (431)")
    header_timeout: float = Field(default=10.0, gt=0, le=3600, description="seconds to send a head (408)")
    body_idle_timeout: float = Field(
        default=10.0, gt=0, le=3600, description="seconds without body bytes (408)"
    )
    body_timeout: float = Field(default=60.0, gt=0, le=3600, description="seconds to send a whole body (408)")


class DispatchConfig(Strict):
    batch_size: int = Field(
        default=500, ge=1, le=10_000, description="Submissions per flow run at most (1 to 10000)."
    )
    batch_wait: float = Field(default=0.2, ge=0, le=60, description="seconds to wait to fill a batch")
    chunk_size: int = Field(default=100, ge=1, le=1_000, description="submissions per delivery task")
    max_flows: int = Field(default=2, ge=1, le=16, description="flow runs in flight at once")
    delivery_processes: int = Field(
        default=1,
        ge=0,
        le=16,
        description="worker processes for deliveries to webhook destinations (0: all in the hub's process);"
        " read at start",
    )


class AdminConfig(Strict):
    """`admin:`: the web console (hub/console) is served only while a credential is set here."""

    password_hash: str | None = Field(
        default=None,
        description="from `hookhub admin hash-password` (scrypt), e.g. ${HOOKHUB_ADMIN_PASSWORD_HASH}",
    )
    token: str | None = Field(
        default=None, min_length=16, description="a bearer token for scripts (Authorization: Bearer ...)"
    )
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30, description="how long a login lasts")
    secret_key: str | None = Field(
        default=None,
        min_length=32,
        description="signs session cookies; default: a key generated once into the data dir (0600)",
    )

    @field_validator("password_hash")
    @classmethod
    def _parsable(cls, value: str | None) -> str | None:
        if value is not None:
            passwords.parse(value)  # BadPasswordHash is a ValueError: reported at the key, value hidden
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.password_hash or self.token)


class HubConfig(Strict):
    sources: dict[str, SourceConfig] = Field(
        default_factory=dict,
        description="Webhook URLs by id: each receives POST /hooks/<id>; `provider` says how requests"
        " are verified and read (`hookhub providers` lists them).",
        examples=[{"contact-form": {"provider": "typeform", "secret": "${TYPEFORM_SECRET}"}}],
    )
    destinations: dict[str, DestinationConfig] = Field(
        default_factory=dict,
        description="Where submissions are delivered, by id; `type` picks the kind (file, webhook, slack,"
        " e-mail, CRM).",
        examples=[{"sales-slack": {"type": "slack", "webhook_url": "${SLACK_WEBHOOK_URL}"}}],
    )
    routes: list[RouteConfig] = Field(
        default_factory=list,
        description="Which submissions go where: each route sends its sources' submissions (where `when`"
        " is true) to its destinations.",
        examples=[[{"name": "all-leads", "from": ["contact-form"], "to": ["sales-slack"]}]],
    )
    server: ServerConfig = Field(
        default_factory=ServerConfig,
        description="The receiver: body and HTTP limits, the public address, the status token.",
        examples=[{"max_body_bytes": 10485760, "public_base_url": "https://hooks.example.com"}],
    )
    dispatch: DispatchConfig = Field(
        default_factory=DispatchConfig,
        description="How pending submissions are batched into flow runs and delivery tasks.",
        examples=[{"batch_size": 500, "max_flows": 2}],
    )
    alerts: AlertsConfig | None = Field(
        default=None,
        description="Alert messages about failures (dead letters, silent sources, ...) and where they go;"
        " absent: no alerts are sent.",
    )
    retention: RetentionConfig | None = Field(
        default=None,
        description="How long stored requests and submissions keep personal data; absent: nothing is"
        " removed, `retention: {}` takes the defaults.",
    )
    admin: AdminConfig = Field(
        default_factory=AdminConfig,
        description="The web console under /admin, served only while password_hash or token is set.",
        examples=[{"password_hash": "${HOOKHUB_ADMIN_PASSWORD_HASH}"}],
    )
    store: str | None = Field(
        default=None,
        description="The ledger: sqlite (the default, <data-dir>/spool.db) or a PostgreSQL URL; the"
        " HOOKHUB_STORE environment variable wins over it.",
        examples=["sqlite", "postgresql://hookhub@db/hookhub", "${HOOKHUB_STORE}"],
    )
