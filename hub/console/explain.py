"""Which routes took a submission and why the others did not, by the routes in force now."""

from __future__ import annotations

from dataclasses import dataclass

from hub.config.models import HubConfig
from hub.routing.plan import compiled_condition
from hub.routing.when import WhenError, WhenSyntaxError
from hub.submission import Submission


@dataclass(frozen=True)
class RouteVerdict:
    route: str
    matched: bool
    why: str
    destinations: list[str]


def explain(config: HubConfig, submission: Submission) -> list[RouteVerdict]:
    verdicts = []
    for route in config.routes:
        targets = route.destination_ids()
        if not route.matches_source(submission.source):
            verdicts.append(
                RouteVerdict(route.name, False, f"from: does not name {submission.source!r}", targets)
            )
            continue
        if not route.when:
            verdicts.append(
                RouteVerdict(route.name, True, "no `when`: every submission of its sources", targets)
            )
            continue
        try:
            matched = compiled_condition(route.when)(submission)
        except (WhenError, WhenSyntaxError) as exc:
            verdicts.append(RouteVerdict(route.name, False, f"`when` cannot be evaluated: {exc}", targets))
            continue
        why = f"`when` is {'true' if matched else 'false'}: {route.when}"
        verdicts.append(RouteVerdict(route.name, matched, why, targets))
    return verdicts
