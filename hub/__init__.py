"""hookhub: receive, verify, spool, normalize and deliver form webhooks."""

__version__ = "0.1.0"
