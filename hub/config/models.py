"""Pydantic models of connectors.yaml.

Key names are part of the user-facing contract (see README). Every model forbids
unknown keys so a typo is an error with a position instead of a silently ignored
setting.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from hub.alerts.durations import Duration
from hub.console import passwords

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


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
        description="after this, a settled request's body, headers and URL are emptied (ids and states stay)",
    )
    submissions: Duration | None = Field(
        default=None,
        ge=3600,
        description="after this, a settled submission is removed with its deliveries and attempts",
    )


class RetentionConfig(RetentionPeriods):
    """`retention:`: periods for every source (each may override them), enforced by the upkeep."""

    raw_requests: Duration | None = Field(default=30 * DAY, ge=3600)
    submissions: Duration | None = Field(default=365 * DAY, ge=3600)
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
    description: str | None = None
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

    destination: str
    template: str | None = None
    map: dict[str, str] | None = None


class RouteConfig(Strict):
    name: str
    from_: list[str] = Field(alias="from", min_length=1)
    when: str | None = None
    to: list[str | RouteTarget] = Field(min_length=1)
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
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1)
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
    batch_size: int = Field(default=500, ge=1, le=10_000)
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


AlertKind = Literal[
    "dead_letters", "failing", "disabled", "stalled", "silent", "reload_rejected", "webhook", "reconciled"
]
"""The alert rules (hub/alerts/rules.py; README "### Alerts" says what each means)."""


class AlertRuleConfig(Strict):
    """Per-rule overrides of the `alerts:` defaults."""

    enabled: bool = True
    to: list[str] | None = Field(default=None, min_length=1, description="instead of alerts.to")
    throttle: Duration | None = Field(default=None, description="instead of alerts.throttle")


class AlertRules(Strict):
    """`alerts.rules`: one entry per rule (AlertKind), each optional."""

    dead_letters: AlertRuleConfig = Field(default_factory=AlertRuleConfig)
    failing: AlertRuleConfig = Field(default_factory=AlertRuleConfig)
    disabled: AlertRuleConfig = Field(default_factory=AlertRuleConfig)
    stalled: AlertRuleConfig = Field(default_factory=AlertRuleConfig)
    silent: AlertRuleConfig = Field(default_factory=AlertRuleConfig)
    reload_rejected: AlertRuleConfig = Field(default_factory=AlertRuleConfig)
    webhook: AlertRuleConfig = Field(default_factory=AlertRuleConfig)
    reconciled: AlertRuleConfig = Field(default_factory=AlertRuleConfig)


class AlertsConfig(Strict):
    """`alerts:`: where alerts go and how often; every rule is on unless `rules` turns it off."""

    to: list[str] = Field(min_length=1, description="destinations that carry alerts (slack, webhook, e-mail)")
    throttle: Duration = Field(default=600.0, description="at most one message per rule and key per this")
    group_window: Duration = Field(
        default=30.0, le=3600, description="dead letters of a destination within this are one message"
    )
    failing_in_a_row: int = Field(default=5, ge=1, le=10_000, description="failed attempts in a row")
    stalled_after: Duration = Field(default=900.0, description="pending longer than this is stalled")
    check_every: Duration = Field(default=5.0, le=300, description="how often the rules are evaluated")
    top_reasons: int = Field(default=3, ge=1, le=20, description="reasons listed in a dead-letter alert")
    rules: AlertRules = Field(default_factory=AlertRules)

    def rule(self, kind: AlertKind) -> AlertRuleConfig:
        rule: AlertRuleConfig = getattr(self.rules, kind)
        return rule

    def destinations_of(self, kind: AlertKind) -> list[str]:
        return self.rule(kind).to or self.to

    def throttle_of(self, kind: AlertKind) -> float:
        return self.rule(kind).throttle or self.throttle


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
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    destinations: dict[str, DestinationConfig] = Field(default_factory=dict)
    routes: list[RouteConfig] = Field(default_factory=list)
    server: ServerConfig = Field(default_factory=ServerConfig)
    dispatch: DispatchConfig = Field(default_factory=DispatchConfig)
    alerts: AlertsConfig | None = None
    retention: RetentionConfig | None = None
    admin: AdminConfig = Field(default_factory=AdminConfig)
    store: str | None = None
    """The ledger: `sqlite` (default, a file in the data dir) or a PostgreSQL URL, usually
    `${HOOKHUB_STORE}`; the HOOKHUB_STORE environment variable wins over it."""
