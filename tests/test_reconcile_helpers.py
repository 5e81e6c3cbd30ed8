"""The checks and reading helpers every reconciler shares (connectors/reconciling.py).

Each provider's own tests (tests/test_reconcile_<provider>.py) show them at work in its settings and
listing; these pin down the rules themselves, so that the same mistake gets the same answer whichever
provider a source uses, and no message quotes a credential or a webhook URL's secret part.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Annotated, ClassVar

import pytest
from pydantic import BaseModel, Field, SecretStr, ValidationError

from connectors.base import UnsupportedPayload
from connectors.reconciling import (
    Credentials,
    ListedResponse,
    ReconcileFailed,
    UnreadableResponse,
    api_base_url,
    bare_url,
    checked_base_url,
    checked_id,
    id_text,
    list_in,
    page_of,
    problem_text,
    read_response,
    same_endpoint,
    secret_text,
    url_health,
    url_host,
)
from hub.submission import Submission

EXAMPLE = "https://api.example.com"
AT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
SECRET = "tok_s3cr3tValueNeverShown0001"  # fake


# -- api_base_url ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://api.eu.example.com", "https://api.eu.example.com"),
        ("  https://api.eu.example.com/ \n", "https://api.eu.example.com"),
        ("https://example.org/API//", "https://example.org/API"),
        ("https://api.example.com:8443/v2", "https://api.example.com:8443/v2"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://localhost:9000", "http://localhost:9000"),
        ("http://[::1]:9000", "http://[::1]:9000"),
    ],
)
def test_api_base_url_accepts_plain_urls_and_strips_them(value: str, expected: str) -> None:
    assert api_base_url(value, EXAMPLE) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ftp://api.example.com", "api_base_url must be an https URL such as https://api.example.com"),
        ("api.example.com", "must be an https URL such as"),
        ("https://", "must be an https URL such as"),
        ("", "must be an https URL such as"),
        ("https://api.example.com/?key=1", "must be a plain URL such as https://api.example.com: no query"),
        ("https://api.example.com/#top", "must be a plain URL"),
        ("https://user:pw@api.example.com", "no query, fragment or user:password@"),
        ("http://api.example.com", "must use https, as in https://api.example.com"),
        ("http://10.0.0.5:8080", "plain http is allowed only to localhost"),
        ("https://api.example.com:port", "api_base_url is not a URL such as https://api.example.com"),
    ],
)
def test_api_base_url_refuses_what_would_send_credentials_astray(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        api_base_url(value, EXAMPLE)


def test_api_base_url_names_the_setting_it_checks() -> None:
    with pytest.raises(ValueError, match="^token_url must use https"):
        api_base_url("http://oauth.example.com/token", "https://oauth2.googleapis.com/token", "token_url")


def test_api_base_url_never_quotes_the_query_or_password() -> None:
    for value in ("https://u:s3cr3t@api.example.com", "https://api.example.com/?apiKey=s3cr3t"):
        with pytest.raises(ValueError) as caught:
            api_base_url(value, EXAMPLE)
        assert "s3cr3t" not in str(caught.value)


# -- comparing and naming webhook URLs -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://Hub.Example.ORG/hooks/Contact/?token=s3cr3t#x", "https://hub.example.org/hooks/Contact"),
        ("HTTPS://u:pw@hub.example.org:443/hooks/a", "https://hub.example.org/hooks/a"),
        ("http://hub.example.org:80/a", "http://hub.example.org/a"),
        ("https://hub.example.org:8443/a", "https://hub.example.org:8443/a"),
        ("https://[2001:DB8::1]:8443/a?t=1", "https://[2001:db8::1]:8443/a"),
        ("https://hub.example.org:port/a", "://"),  # unreadable: shown as nothing, matches nothing real
    ],
)
def test_bare_url_keeps_scheme_host_port_and_path_only(url: str, expected: str) -> None:
    assert bare_url(url) == expected


@pytest.mark.parametrize(
    ("url", "expected", "same"),
    [
        ("https://hub.example.org/hooks/a?token=one", "https://hub.example.org/hooks/a?token=two", True),
        ("https://HUB.example.org/hooks/a/", "https://hub.example.org/hooks/a", True),
        ("https://hub.example.org:443/hooks/a", "https://hub.example.org/hooks/a", True),
        ("https://u:pw@hub.example.org/hooks/a", "https://hub.example.org/hooks/a", True),
        ("https://hub.example.org/hooks/a", "https://hub.example.org/hooks/b", False),
        ("https://hub.example.org/hooks/A", "https://hub.example.org/hooks/a", False),  # paths are case-exact
        ("http://hub.example.org/hooks/a", "https://hub.example.org/hooks/a", False),
        ("https://old-hub.example.org/hooks/a", "https://hub.example.org/hooks/a", False),
        ("https://hub.example.org:8443/hooks/a", "https://hub.example.org/hooks/a", False),
        ("", "https://hub.example.org/hooks/a", False),
        ("  ", "", False),
    ],
)
def test_same_endpoint_ignores_query_fragment_and_user_info(url: str, expected: str, same: bool) -> None:
    assert same_endpoint(url, expected) is same


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://hooks.zapier.com/hooks/catch/123/abc/?x=1", "hooks.zapier.com"),
        ("https://u:pw@Old-Hub.example.org:8443/in", "old-hub.example.org"),
        ("not a url", "?"),
        ("", "?"),
        (None, "?"),
        (42, "?"),
        ("https://[::1", "?"),
    ],
)
def test_url_host_names_a_webhook_by_its_host_alone(url: object, host: str) -> None:
    assert url_host(url) == host


def test_url_health_judges_a_list_of_webhook_urls() -> None:
    hub = "https://hub.example.org/hooks/signup"
    where, how = "form 123", "add it again in the builder"
    missing = url_health(["", "  "], hub, where, how)
    assert (missing.state, missing.detail) == (
        "missing",
        "form 123 has no webhook: add it again in the builder",
    )
    assert url_health([f"{hub}/?token=s3cr3t"], f"{hub}?token=other", where, how).state == "ok"
    unknown = url_health(["https://anywhere.example/x"], None, where, how)
    assert unknown.state == "ok" and "not checked" in unknown.detail and "anywhere" not in unknown.detail
    elsewhere = url_health(
        [
            "https://hooks.zapier.com/hooks/catch/123/abc/",
            "https://u:pw@old-hub.example.org/hooks/signup?t=s3",
        ],
        hub,
        where,
        how,
    )
    assert elsewhere.state == "elsewhere"
    assert elsewhere.detail == (
        "form 123 has no webhook to https://hub.example.org/hooks/signup "
        "(its webhooks go to hooks.zapier.com, old-hub.example.org)"
    )


# -- credentials and ids -----------------------------------------------------------------------


def test_secret_text_strips_and_returns_the_credential() -> None:
    assert secret_text(f"  {SECRET}\n", "credentials.token", "EXAMPLE_TOKEN") == SECRET
    assert secret_text(SecretStr(SECRET), "credentials.token", "EXAMPLE_TOKEN") == SECRET


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "credentials.token is empty (is its environment variable, e.g. EXAMPLE_TOKEN, unset?)"),
        (" \t\n", "credentials.token is empty"),
        ("${EXAMPLE_TOKEN}", "credentials.token holds an unexpanded ${...} reference"),
        ("x${EXAMPLE_TOKEN", "set the environment variable it names (e.g. EXAMPLE_TOKEN)"),
        (f"Bearer {SECRET}", "credentials.token must be the token alone, without 'Bearer '"),
        (f"bearer\t{SECRET}", "without 'Bearer '"),
        (f"{SECRET[:10]} {SECRET[10:]}", "must be one line and must not contain spaces or line breaks"),
        (f"{SECRET}\n{SECRET}", "must not contain spaces or line breaks"),
        (f"{SECRET}\x00", "must not contain spaces or line breaks"),
    ],
)
def test_secret_text_refuses_what_every_provider_refuses(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        secret_text(SecretStr(value), "credentials.token", "EXAMPLE_TOKEN")
    assert SECRET not in str(caught.value) and SECRET[10:] not in str(caught.value)


def test_a_token_that_starts_with_bearer_letters_is_a_token() -> None:
    assert secret_text("bearerish0123456789", "credentials.token", "T") == "bearerish0123456789"


FORM_ID = re.compile(r"[A-Za-z0-9]+")


def test_id_text_takes_an_id_or_its_number() -> None:
    assert id_text(" u6nXL7 ", "form_id", FORM_ID, "the id") == "u6nXL7"
    assert id_text(405631222, "survey_id", FORM_ID, "the id") == "405631222"


@pytest.mark.parametrize(
    "value", ["", "  ", "https://acme.typeform.com/to/u6nXL7", "u6n XL7", True, None, 1.5]
)
def test_id_text_refuses_anything_else_saying_where_to_find_it(value: object) -> None:
    with pytest.raises(ValueError, match=r"^form_id must be the id at the end of the form's URL$"):
        id_text(value, "form_id", FORM_ID, "the id at the end of the form's URL")


# -- reading one response ------------------------------------------------------------------------


def submission() -> Submission:
    return Submission(id="pending", source="pending", provider="typeform", event_id="r1", submitted_at=AT)


def test_read_response_gives_the_normalized_response() -> None:
    read = read_response("r1", AT, submission)
    assert read == ListedResponse("r1", AT, submission())


@pytest.mark.parametrize(
    ("error", "problem"),
    [
        (
            UnsupportedPayload("form_response.answers is not a list of objects"),
            "form_response.answers is not",
        ),
        (AttributeError("'list' object has no attribute 'items'"), "'list' object has no attribute 'items'"),
        (KeyError("id"), "'id'"),
        (ZeroDivisionError(), "ZeroDivisionError"),
    ],
)
def test_read_response_sets_aside_a_response_that_cannot_be_normalized(
    error: Exception, problem: str
) -> None:
    def fails() -> Submission:
        raise error

    read = read_response("r2", AT, fails)
    assert isinstance(read, UnreadableResponse)
    assert (read.response_id, read.submitted_at) == ("r2", AT) and read.problem.startswith(problem)


def test_read_response_lets_a_cancelled_run_stop() -> None:
    def cancelled() -> Submission:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        read_response("r3", AT, cancelled)


def test_problem_text_is_one_short_line() -> None:
    assert problem_text(ValueError("line one\n   line two")) == "line one line two"
    long = problem_text(ValueError("x" * 1000))
    assert len(long) == 300 and long.endswith("…")
    assert problem_text(ValueError(" ")) == "ValueError"


def test_page_of_keeps_the_readable_and_the_unreadable_apart_in_order() -> None:
    odd = UnreadableResponse("r2", AT, "no answers")
    first, last = ListedResponse("r1", AT, submission()), ListedResponse("r3", AT, submission())
    page = page_of([first, odd, last], total=7)
    assert page.responses == [first, last] and page.unreadable == [odd] and page.total == 7
    empty = page_of([])
    assert (empty.responses, empty.unreadable, empty.total) == ([], [], None)


# -- Credentials, checked_id, checked_base_url, list_in ------------------------------------------


class _Credentials(Credentials):
    token: SecretStr = Field(description="a token")
    env_hint: ClassVar[str] = "EXAMPLE_TOKEN"

    @classmethod
    def problem(cls, token: str) -> str | None:
        return None if token.startswith("tok_") else "must start with tok_"


def test_credentials_check_the_first_field_alike_then_by_the_providers_rule() -> None:
    credentials = _Credentials(token=f" {SECRET} ")
    assert credentials.token.get_secret_value() == SECRET and SECRET not in repr(credentials)
    assert credentials.bearer() == {"authorization": f"Bearer {SECRET}", "accept": "application/json"}
    for value, message in (
        ("", "credentials.token is empty"),
        ("abc", "credentials.token must start with tok_"),
    ):
        with pytest.raises(ValidationError, match=re.escape(message)):
            _Credentials(token=value)
    with pytest.raises(ValidationError, match="extra"):
        _Credentials.model_validate({"token": SECRET, "other": 1})
    with pytest.raises(TypeError, match="first field must be the secret"):
        type("NoSecret", (Credentials,), {"__annotations__": {"name": "str"}})


class _Settings(BaseModel):
    form_id: Annotated[str, checked_id(re.compile(r"[0-9]+"), "digits", before=True)]
    api_base_url: Annotated[str | None, checked_base_url(EXAMPLE, "/v2")] = None


def test_checked_fields_check_under_their_own_name() -> None:
    settings = _Settings.model_validate({"form_id": 42, "api_base_url": "https://api.example.com/v2/"})
    assert (settings.form_id, settings.api_base_url) == ("42", "https://api.example.com")
    assert _Settings(form_id="7", api_base_url=None).api_base_url is None
    with pytest.raises(ValidationError, match="form_id must be digits"):
        _Settings(form_id="a7")
    with pytest.raises(ValidationError, match="api_base_url must use https"):
        _Settings(form_id="7", api_base_url="http://api.example.com")


def test_list_in_gives_the_answers_list_or_fails_naming_the_request() -> None:
    assert list_in({"items": [1]}, "items", "list") == [1]
    for body in ({"items": None}, [], "text"):
        with pytest.raises(ReconcileFailed, match="^list responses: the answer has no items list$"):
            list_in(body, "items", "list responses")
