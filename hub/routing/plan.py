"""Which destinations one submission goes to, by the routes in force."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from hub.config.models import HubConfig, RouteConfig, RouteTarget
from hub.routing.when import Condition, WhenError, WhenSyntaxError, compile_when
from hub.spool.rows import PlannedDelivery
from hub.submission import Submission

IMPORTED = "imported"
"""`metadata.origin` of a submission `hookhub import` brought in (hub/reconcile/): routed only by
routes with `backfill: true`."""


@dataclass
class RoutingResult:
    deliveries: list[PlannedDelivery] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Destinations a route from this source names whose `when` was false, and no other route
    delivers to (counted as `skipped` in /metrics)."""


@lru_cache(maxsize=512)
def compiled_condition(text: str) -> Condition:
    return compile_when(text)


def plan(
    config: HubConfig, submission: Submission, condition: Callable[[str], Condition] = compiled_condition
) -> RoutingResult:
    """Every destination a matching route sends to, once each (the first route naming it wins).

    A route whose condition cannot be evaluated for this submission is an error for this
    submission only; the other routes still deliver. `condition` compiles a `when` (tests hand
    in one that fails).
    """
    result = RoutingResult()
    seen: set[str] = set()
    kept_from: list[str] = []
    imported = submission.metadata.get("origin") == IMPORTED
    for route in config.routes:
        if not route.matches_source(submission.source):
            continue
        if imported and not route.backfill:  # a form's history goes only where a route asked for it
            continue
        if route.when:
            try:
                if not condition(route.when)(submission):
                    kept_from.extend(route.destination_ids())
                    continue
            except (WhenError, WhenSyntaxError) as exc:
                result.errors.append(f"route {route.name!r}: cannot evaluate `when`: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001 - an evaluator bug fails this submission, not its batch
                result.errors.append(f"route {route.name!r}: `when` failed: {type(exc).__name__}: {exc}")
                continue
        for destination in route.destination_ids():
            if destination not in seen:
                seen.add(destination)
                result.deliveries.append(PlannedDelivery(destination=destination, route=route.name))
    result.skipped = [d for d in dict.fromkeys(kept_from) if d not in seen]
    return result


def route_target(config: HubConfig, route_name: str, destination: str) -> RouteTarget | None:
    """The route's per-destination template or mapping, if it gave one."""
    route: RouteConfig | None = next((r for r in config.routes if r.name == route_name), None)
    if route is None:
        return None
    for target in route.to:
        if isinstance(target, RouteTarget) and target.destination == destination:
            return target
    return None
