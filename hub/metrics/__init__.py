"""What /metrics, /readyz and `hookhub status` report about delivery, read from the spool."""
