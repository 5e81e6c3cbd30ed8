"""One log format for hookhub's, uvicorn's and Prefect's records: text on a terminal, JSON lines otherwise.

Call sites pass facts in `extra=` (source, event, reason class, ids). Nothing here ever
formats request bodies, headers, answers or secrets: those never reach a log record
(docs/security.md, "Logs").

Prefect configures its loggers when it is imported, from the file its
PREFECT_LOGGING_SETTINGS_PATH names; flows/__init__.py points that at
flows/prefect_logging.yml, which gives Prefect's records no handler of their own, so they
reach the root logger's, set here. uvicorn is started with `log_config=None` for the same
reason.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Literal

import orjson

from hub.log_batching import BatchingStreamHandler

FORMAT_ENV = "HOOKHUB_LOG_FORMAT"
"""Carries the chosen format to the delivery worker processes, which set up logging on their own."""

LogFormat = Literal["text", "json"]

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# Prefect's run loggers add these to every record; its API handler reads them, a reader needs only
# the run's name.
_HIDDEN = frozenset({"send_to_api", "flow_run_id", "task_run_id", "flow_name", "task_name"})


def _facts(record: logging.LogRecord) -> dict[str, object]:
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _STANDARD and key not in _HIDDEN and not key.startswith("_")
    }


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _exception(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    # Prefect logs some failed states with exc_info=True outside an except block: (None, None, None).
    if record.exc_info and record.exc_info[0] is not None:
        return formatter.formatException(record.exc_info)
    return None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the record's facts.

    orjson, not json: an accepted webhook costs one line, and json.dumps took most of the CPU
    of a line.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_facts(record))
        exc = _exception(self, record)
        if exc:
            entry["exc"] = exc
        return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


class TextFormatter(logging.Formatter):
    """`HH:MM:SS.mmm LEVEL   logger: message  key=value ...`, for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        line = f"{clock} {record.levelname:<7} {record.name}: {record.getMessage()}"
        facts = " ".join(
            f"{key}={_text(value)}" for key, value in _facts(record).items() if value is not None
        )
        if facts:
            line = f"{line}  {facts}"
        exc = _exception(self, record)
        return f"{line}\n{exc}" if exc else line


def _text(value: object) -> str:
    if isinstance(value, str):
        return value if value and " " not in value and "=" not in value else repr(value)
    if isinstance(value, dict | list):
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    return str(value)


def choose_format(requested: str | None = None) -> LogFormat:
    """`requested` ("text", "json", "auto" or None: $HOOKHUB_LOG_FORMAT, else by stderr)."""
    choice = (requested or os.environ.get(FORMAT_ENV) or "auto").lower()
    if choice == "auto":
        return "text" if sys.stderr.isatty() else "json"
    if choice not in ("text", "json"):
        raise ValueError(f"log format must be text, json or auto, not {choice!r}")
    return "text" if choice == "text" else "json"


def make_handler(log_format: LogFormat) -> logging.Handler:
    handler = BatchingStreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if log_format == "text" else JsonFormatter())
    return handler


def prefect_handler() -> logging.Handler:
    """The root handler flows/prefect_logging.yml gives a process where setup_logging did not run."""
    return make_handler(choose_format())


def setup_logging(level: str = "info", log_format: str | None = None) -> LogFormat:
    """Send hookhub's, uvicorn's, Prefect's and every other library's records to one stderr handler.

    hookhub's loggers log at `level`; uvicorn's at the level its config sets, the others from
    WARNING up (httpx, which Prefect's client uses, logs every request at INFO). Returns the format.
    """
    chosen = choose_format(log_format)
    os.environ[FORMAT_ENV] = chosen
    handler = make_handler(chosen)
    root = logging.getLogger()
    hookhub = logging.getLogger("hookhub")
    for old in {*root.handlers, *hookhub.handlers}:
        if isinstance(old, BatchingStreamHandler):  # set up before: write out what it holds, stop it
            old.stop()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    hookhub.handlers[:] = [handler]
    hookhub.setLevel(level.upper())
    hookhub.propagate = False
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return chosen
