"""What the WordPress form add-ons share (Gravity Forms' Webhooks Add-On, the WPForms Webhooks addon).

They sign nothing but let the admin add a request header (connectors/_tokens.py), send a body
of the admin's choice as JSON or a form, and encode JSON with `wp_json_encode`.
"""

from __future__ import annotations

import json
from typing import Any

from connectors import _answers
from connectors._tokens import HookhubOrBearerTokenVerification
from connectors.base import Connector, InboundRequest


class WordPressAddOn(HookhubOrBearerTokenVerification, Connector):
    content_types = _answers.BODY_OBJECT_TYPES

    @staticmethod
    def wordpress_request(url: str, payload: dict[str, Any], token_header: dict[str, str]) -> InboundRequest:
        """A send-test request as the add-on sends it, with the admin's token header."""
        body = json.dumps(payload).encode("utf-8")  # ASCII with \uNNNN escapes, as wp_json_encode
        headers = {"content-type": "application/json", "user-agent": "WordPress (hookhub-send-test)"}
        return InboundRequest(method="POST", url=url, headers=headers | token_header, body=body)
