"""Reconciliation: list a form's responses through the provider's API and store what never arrived.

state.py keeps each source's watermark and last outcome; keys.py gives older stored webhooks
their response identity; ingest.py stores the missing responses; run.py ties them together for
the scheduled flow (flows/reconcile.py) and the commands (hub/cli_reconcile.py).
"""
