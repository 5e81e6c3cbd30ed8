"""The list page's form, turned into hub.spool.search's query (which keeps every filter on an index)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from hub.spool.search import Cursor, SearchQuery

PAGE = 50


class Filters(BaseModel):
    """The list's query string as typed (every field optional; empty strings mean 'any')."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    email: str = ""
    name: str = ""
    event_id: str = ""
    source: str = ""
    form: str = ""
    status: str = ""
    since: str = Field(default="", description="YYYY-MM-DD[THH:MM] UTC, inclusive")
    until: str = Field(default="", description="YYYY-MM-DD[THH:MM] UTC, exclusive")
    after: str = Field(default="", description="the cursor of the next page")

    def query(self) -> SearchQuery:
        """Raises ValueError (pydantic's ValidationError is one) with what is wrong in the form."""
        return SearchQuery.model_validate(
            {
                "email": self.email or None,
                "name": self.name or None,
                "event_id": self.event_id or None,
                "source": self.source or None,
                "form": self.form or None,
                "state": self.status or None,
                "since": _epoch(self.since) if self.since else None,
                "until": _epoch(self.until) if self.until else None,
                "after": Cursor.decode(self.after) if self.after else None,
                "limit": PAGE,
            }
        )


def _epoch(text: str) -> float:
    value = datetime.fromisoformat(text)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
