"""Alerts: tell the admin on call when submissions fail for good or delivery stops (issue 13).

`rules` decide what is firing from the spool, `store` keeps what was seen, what fired and what
is owed across restarts, `evaluator` runs both in the hub and sends the outbox through the
destinations named in the `alerts:` section of connectors.yaml.
"""
