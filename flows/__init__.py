"""Prefect flows and destinations.

Prefect reads its settings from the environment once, at import; every module that
imports prefect lives in this package, so the defaults below are in place first. Each
is only a default: an environment variable set by the admin wins.
"""

import os

_PREFECT_DEFAULTS = {
    # The ephemeral server needs ~7 s on an idle 2-core machine and far more under load;
    # Prefect's 20 s default makes a busy hub start a second server on the same port.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    # A self-hosted hub sends nothing anywhere it was not told to.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # Prefect's engine logs INFO lines for every run ("Finished in state Completed()"): they would
    # drown the hub's log and multiply the run-log records sent to Prefect's API. Each task run
    # has one summary record of hookhub's instead (flows/run_report.py); failures still show.
    "PREFECT_LOGGING_LEVEL": "WARNING",
    # Prefect's records in hookhub's format, through hookhub's handler (see hub/logs.py).
    "PREFECT_LOGGING_SETTINGS_PATH": os.path.join(os.path.dirname(__file__), "prefect_logging.yml"),
    # Prefect's SDK prints a telemetry notice into the log on a terminal unless told not to track.
    "DO_NOT_TRACK": "1",
    # For the ephemeral server the hub starts: its SQLite database takes one writer at a time,
    # and persisting every task-run event (the UI's Events feed) made flow-run creation lose
    # write conflicts and back off for seconds (bench/e2e.py p95 at 50/s: 3.5-4.2 s with it,
    # 1.3 s without). Flow and task runs, states and logs are still recorded and shown.
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false",
}

for _name, _value in _PREFECT_DEFAULTS.items():
    os.environ.setdefault(_name, _value)
