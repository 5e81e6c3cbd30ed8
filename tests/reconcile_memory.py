"""A provider API that answers from memory, for the tests of reconciliation's core (hub/reconcile/)
and its commands: Typeform's reconciler is swapped for it (`monkeypatch.setattr(TypeformConnector,
"reconciler", MemoryReconciler())`), so the core is tested apart from any provider's API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from connectors.reconciling import (
    ListedResponse,
    ReconcileFailed,
    Reconciler,
    ReconcileSettings,
    ResponsePage,
    UnreadableResponse,
    WebhookHealth,
    Window,
)
from hub.submission import Answer, Submission


class MemorySettings(ReconcileSettings):
    form_id: str
    credentials: dict[str, SecretStr]


class MemoryReconciler(Reconciler):
    """Answers from `responses_by_id`, `page` at a time, oldest first; fails as told."""

    Settings = MemorySettings
    page_size = 2
    api = "memory API"

    def __init__(self) -> None:
        super().__init__()
        self.submitted: dict[str, float] = {}
        self.fail_after_pages: int | None = None
        self.permanent = False
        self.webhook: WebhookHealth | None = None
        self.windows: list[Window] = []
        self.unreadable: set[str] = set()

    def add(self, response_id: str, at: float) -> None:
        self.submitted[response_id] = at

    async def responses(
        self, source: Any, settings: Any, window: Window, http: Any
    ) -> AsyncIterator[ResponsePage]:
        self.windows.append(window)
        since, until = window.since.timestamp(), window.until.timestamp()
        chosen = sorted((at, rid) for rid, at in self.submitted.items() if since <= at < until)
        for number, start in enumerate(range(0, len(chosen), self.page_size)):
            if self.fail_after_pages is not None and number >= self.fail_after_pages:
                raise ReconcileFailed("memory API: HTTP 401: token revoked", permanent=self.permanent)
            page = chosen[start : start + self.page_size]
            odd = [
                UnreadableResponse(rid, datetime.fromtimestamp(at, UTC), "answers is not a list")
                for at, rid in page
                if rid in self.unreadable
            ]
            readable = [_listed(rid, at) for at, rid in page if rid not in self.unreadable]
            yield ResponsePage(readable, total=len(chosen), unreadable=odd)

    async def webhook_health(
        self, source: Any, settings: Any, expected_url: str | None, http: Any
    ) -> WebhookHealth | None:
        return self.webhook


def _listed(response_id: str, at: float) -> ListedResponse:
    submitted = datetime.fromtimestamp(at, UTC)
    submission = Submission(
        id="listed",
        source="listed",
        provider="typeform",
        form_id="form1",
        event_id=response_id,
        submitted_at=submitted,
        email=f"{response_id}@example.org",
        answers=[Answer(key="email", label="Email", type="email", value=f"{response_id}@example.org")],
    )
    return ListedResponse(response_id, submitted, submission)
