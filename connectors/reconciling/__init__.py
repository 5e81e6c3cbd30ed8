"""What reconciliation needs from a provider: its responses API, and whether its webhook is healthy.

Providers drop webhooks in ways no receiver can see (a Typeform webhook disabled after failures,
a Jotform webhook deleted while the form is edited). A connector whose provider has a documented
list endpoint sets `Connector.reconciler` to a `Reconciler`; hub/reconcile/ then lists the
form's responses in a time window, compares them with the spool by the provider's response
identity, and stores the missing ones (metadata.origin `reconciled` or `imported`).

The identity is the key of the whole feature: a response listed here and a webhook for the same
response must carry the same `response_id` (the webhook's in `Envelope.response_id`), so that
whichever comes second is a duplicate. Each provider's docs page states its rule.

Every request goes through the `Sender` (hub/sender.py) and through `get_json` (api_calls.py),
which retries 429 and 5xx answers (honouring Retry-After) and turns the rest into `ReconcileFailed`.
contract.py holds what a reconciler is and yields; checks.py the settings checks (also as field
validators) and URL comparisons every provider shares; credentials.py the `Credentials` base that
checks each provider's secret; listing.py the reading of a listing one item at a time. Their public
names are this package's.
"""

from __future__ import annotations

from connectors.reconciling.api_calls import MAX_WAIT, RETRIES, get_json, retry_after
from connectors.reconciling.checks import (
    LOOPBACK,
    api_base_url,
    bare_url,
    checked_base_url,
    checked_id,
    checked_zone,
    hosts,
    id_text,
    same_endpoint,
    secret_text,
    url_health,
    url_host,
    zone_text,
)
from connectors.reconciling.contract import (
    DAY,
    ListedResponse,
    ReconcileFailed,
    Reconciler,
    ReconcileSettings,
    ResponsePage,
    Sleep,
    UnreadableResponse,
    WebhookHealth,
    WebhookState,
    Window,
)
from connectors.reconciling.credentials import Credentials
from connectors.reconciling.listing import Read, list_in, page_of, problem_text, read_response

__all__ = [
    "DAY",
    "Credentials",
    "LOOPBACK",
    "ListedResponse",
    "MAX_WAIT",
    "RETRIES",
    "Read",
    "ReconcileFailed",
    "ReconcileSettings",
    "Reconciler",
    "ResponsePage",
    "Sleep",
    "UnreadableResponse",
    "WebhookHealth",
    "WebhookState",
    "Window",
    "api_base_url",
    "bare_url",
    "checked_base_url",
    "checked_id",
    "checked_zone",
    "get_json",
    "hosts",
    "id_text",
    "list_in",
    "page_of",
    "problem_text",
    "read_response",
    "retry_after",
    "same_endpoint",
    "secret_text",
    "url_health",
    "url_host",
    "zone_text",
]
