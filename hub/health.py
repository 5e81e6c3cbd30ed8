"""What the dispatcher last knew about delivery, for /readyz, /metrics, `status` and alerts.

The dispatcher's thread writes these fields with plain attribute assignments and other threads
(the receiver's event loop) read them. Each write replaces one reference, which is atomic under
CPython's GIL, so a reader sees either the old value or the new one, never a torn one; no lock
is needed as long as no reader needs two fields to agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DeliveryHealth:
    """What the dispatcher last knew about delivery; read by /readyz, /metrics, status and alerts."""

    dispatching: bool = False
    """False with --no-dispatch (no dispatcher runs in this process)."""
    prefect_reachable: bool | None = None
    """None: not checked yet."""
    prefect_error: str | None = None
    prefect_checked_at: float | None = None
    """Wall time (unix seconds) of the last check of Prefect's API."""
    dispatcher_beat_at: float | None = None
    """Wall time of the dispatcher loop's last turn."""

    def dispatcher_alive(self, now: float, within: float = 30.0) -> bool:
        """Whether the dispatcher's loop turned within the last `within` seconds of `now`."""
        return (
            self.dispatching
            and self.dispatcher_beat_at is not None
            and now - self.dispatcher_beat_at <= within
        )
