"""hub/log_batching.py: lines go out in batches, and keep going out after a dictConfig closed the handler.

Prefect's import runs logging.config.dictConfig, which closes every handler in the process, also
hookhub's, which stays attached to the "hookhub" logger. These tests do what that import does.
"""

from __future__ import annotations

import io
import logging
import logging.config
import subprocess
import sys
import textwrap

from hub.log_batching import BatchingStreamHandler
from tests.harness import wait_for

DICT_CONFIG = {"version": 1, "disable_existing_loggers": False}


def _logger(name: str, stream: io.StringIO) -> tuple[logging.Logger, BatchingStreamHandler]:
    handler = BatchingStreamHandler(stream, interval=0.05)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, handler


def test_info_lines_are_written_without_a_warning_to_push_them() -> None:
    stream = io.StringIO()
    logger, handler = _logger("hookhub.test_batching.plain", stream)
    try:
        logger.info("first line")
        wait_for(lambda: "INFO first line\n" in stream.getvalue(), timeout=5, what="the batched line")
    finally:
        handler.stop()


def test_lines_keep_going_out_after_a_dict_config_closed_the_handler() -> None:
    stream = io.StringIO()
    logger, handler = _logger("hookhub.test_batching.reconfigured", stream)
    try:
        logging.config.dictConfig(DICT_CONFIG)  # closes every handler, as Prefect's import does
        logger.info("after the reconfiguration")
        wait_for(
            lambda: "INFO after the reconfiguration\n" in stream.getvalue(),
            timeout=5,
            what="a line logged after dictConfig closed the handler",
        )
    finally:
        handler.stop()


def test_lines_held_at_exit_are_written_even_after_a_dict_config() -> None:
    program = textwrap.dedent(
        """
        import logging, logging.config, sys
        from hub.log_batching import BatchingStreamHandler
        handler = BatchingStreamHandler(sys.stdout, interval=60)
        logger = logging.getLogger("hookhub")
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
        logger.info("last words")
        """
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "last words\n"
