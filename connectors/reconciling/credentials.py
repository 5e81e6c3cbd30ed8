"""`reconcile.credentials`: one API secret checked the same way for every provider.

A provider subclasses `Credentials`, declares its secret as the class's first field (under the YAML
key its docs use: `api_key`, `token`, `access_token`), names the environment variable the docs suggest
(`env_hint`) and, in `problem`, its own rule for the secret's shape:

    class FilloutCredentials(Credentials):
        api_key: SecretStr = Field(description="a Fillout API key (Settings > Developer)")
        env_hint: ClassVar[str] = "FILLOUT_API_KEY"

        @classmethod
        def problem(cls, key: str) -> str | None:
            return "must be the whole Fillout API key" if len(key) < 16 else None

The secret is refused like every other provider's first (`secret_text`: empty, an unexpanded `${...}`,
`Bearer `, more than one word), then by `problem`, whose text follows the setting's name
(`credentials.api_key must be ...`). More fields (an encryption password) keep their own validators.
`bearer()` gives the request headers of an API that takes the secret as a Bearer token.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationInfo, field_validator

from connectors.reconciling.checks import secret_text


def _secret_example(schema: dict[str, Any], model: type[Any]) -> None:
    """The JSON Schema's example for the secret: the environment variable the provider's docs suggest."""
    secret = schema.get("properties", {}).get(getattr(model, "secret_field", ""))
    if secret is not None:
        secret.setdefault("examples", [f"${{{model.env_hint}}}"])


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_secret_example)

    env_hint: ClassVar[str]
    """The environment variable the provider's docs suggest for the secret (`TYPEFORM_TOKEN`)."""
    secret_field: ClassVar[str]
    """The name of the secret's field: the class's first (set for each subclass)."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        first = next(iter(cls.model_fields), None)
        if first is None or cls.model_fields[first].annotation is not SecretStr:
            raise TypeError(f"{cls.__name__}: the first field must be the secret, a SecretStr")
        cls.secret_field = first

    @classmethod
    def yaml_example(cls) -> dict[str, str]:
        """`credentials:` as connectors.yaml would say it, for the JSON Schema's examples."""
        return {cls.secret_field: f"${{{cls.env_hint}}}"}

    @classmethod
    def problem(cls, secret: str) -> str | None:
        """What is wrong with the secret (after `secret_text`), to follow its name; None if nothing."""
        return None

    def bearer(self) -> dict[str, str]:
        """Request headers for an API that takes the secret as a Bearer token and answers JSON."""
        secret: SecretStr = getattr(self, self.secret_field)
        return {"authorization": f"Bearer {secret.get_secret_value()}", "accept": "application/json"}

    @field_validator("*")
    @classmethod
    def _secret(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name != cls.secret_field:
            return value
        name = f"credentials.{cls.secret_field}"
        text = secret_text(value, name, cls.env_hint)
        problem = cls.problem(text)
        if problem is not None:
            raise ValueError(f"{name} {problem}")
        return SecretStr(text)
