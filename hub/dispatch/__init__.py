"""The dispatcher: claims spooled work in batches and runs one Prefect flow per batch.

It runs in its own thread with its own event loop, so Prefect's engine (and the ~7 s
start of its ephemeral server) never stalls the receiver: webhooks are accepted and
spooled from the first second, and the dispatcher catches up once Prefect is ready.

A batch is whatever is pending when the first item has waited `batch_wait` seconds, up to
`batch_size`; up to `max_flows` flow runs are in flight at once. Claims are recorded in
the spool, and a flow run that fails gives its claims back, so nothing is held by a run
that is gone; at start, claims of a killed process are put back too.

A failed run's claims come back as suspects, not in the queue's order: they are tried again
after a pause in halves, turn about with fresh batches, down to single rows, and a row whose
runs fail alone `QUARANTINE_AFTER` times is a dead letter. One row that fails every run it is
in (for a reason no stage could pin on it) so costs a few runs and holds back nothing. While
Prefect's API does not answer, a failure is nobody's: the claims go back unchanged and the
dispatcher pauses.
"""

from hub.dispatch.loop import Dispatcher, attach_dispatcher

__all__ = ["Dispatcher", "attach_dispatcher"]
