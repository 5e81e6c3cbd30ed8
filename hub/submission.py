"""The one shape every provider's webhook becomes.

The JSON field names of `Submission` are a public contract: the generic webhook
destination sends it as is, and routes/templates address these names.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator
from pydantic_core import PydanticSerializationError


def well_formed(text: str) -> str:
    """`text` with each lone UTF-16 surrogate replaced by U+FFFD; valid text is returned as is.

    JSON may escape half of a surrogate pair (`"Ren\\ud83d"`: what JavaScript writes when a
    length limit cuts an emoji in two) and Python's json module decodes it into a str that no
    UTF-8 encoder accepts (orjson, pydantic's JSON and SQLite all refuse it). Adjacent halves
    of a pair become the character they spell.
    """
    if _is_well_formed(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _is_well_formed(text: str) -> bool:
    if text.isascii():  # the common case, ~30 ns
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_is_well_formed(value: Any) -> bool:
    if isinstance(value, str):
        return _is_well_formed(value)
    if isinstance(value, dict):
        return all(
            (not isinstance(k, str) or _is_well_formed(k)) and _json_is_well_formed(v)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return all(_json_is_well_formed(v) for v in value)
    return True


def well_formed_json(value: Any) -> Any:
    """`value` (decoded JSON) with every key and text made well-formed; itself when it already is."""
    if _json_is_well_formed(value):
        return value
    if isinstance(value, str):
        return well_formed(value)
    if isinstance(value, dict):
        return {well_formed(k) if isinstance(k, str) else k: well_formed_json(v) for k, v in value.items()}
    return [well_formed_json(v) for v in value]


AnswerValue = str | int | float | bool | list[str] | None


class Answer(BaseModel):
    """One answered question, in form order.

    `key` is the provider's stable identifier for the question (field id, ref, input
    name); `label` is the most human-facing name the payload carries; `type` is the
    provider's own type name, lower-cased; `value` keeps the JSON type the provider used
    (lists of strings for multi-select, URL strings for files, YYYY-MM-DD for dates).
    """

    model_config = ConfigDict(extra="forbid")

    key: str
    label: str
    type: str
    value: AnswerValue


class Submission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="hookhub's id of the stored request (stable across retries and replays)")
    source: str
    provider: str
    form_id: str | None = None
    form_title: str | None = None
    event_id: str
    submitted_at: datetime
    email: str | None = None
    name: str | None = None
    answers: list[Answer] = Field(default_factory=list)
    hidden: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("submitted_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @field_serializer("submitted_at")
    def _iso_utc(self, value: datetime) -> str:
        return iso_utc(value)

    def to_json(self) -> tuple[Submission, str]:
        """This Submission as it is stored and sent, with its JSON.

        Text with a lone UTF-16 surrogate cannot be encoded (see `well_formed`): only then is a
        copy made with each one replaced by U+FFFD. Checking every string up front cost ~13 us
        per typical Submission in Python; the encoder finds them for free.
        """
        try:
            return self, self.model_dump_json()
        except PydanticSerializationError:
            cleaned = Submission.model_validate(well_formed_json(self.model_dump()))
            return cleaned, cleaned.model_dump_json()

    def answer_map(self) -> dict[str, AnswerValue]:
        """Answers by label (first wins), the view routes and templates use most."""
        out: dict[str, AnswerValue] = {}
        for answer in self.answers:
            out.setdefault(answer.label, answer.value)
        return out


def iso_utc(value: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, milliseconds only when the source had sub-seconds."""
    value = value.astimezone(UTC)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(text: str) -> datetime:
    """Parse an ISO 8601 instant as providers send it (`Z` or offset); naive means UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
