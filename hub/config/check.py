"""`hookhub check [FILE]`: validate connectors.yaml and say so in a form fit for CI.

`check_file(path, environ=None) -> (exit_code, text)`: the CLI prints `text` and exits
with `exit_code`. Invalid: exit 1 and every problem, one per line, `FILE:LINE:COL:
key.path: message`. Valid: exit 0, one summary line, then one `warning: ...` line per
warning (unused sources or destinations, routes no source can reach, weak secrets).

With `against_data` (a hub data dir): also a warning per `when` answer label that none of the
recent stored submissions of the route's sources had (hub/config/label_check.py); a dir with no
hub data there exits 2 with one `error:` line. An invalid file exits 1 with its problems
and the data is not read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from hub.config.loader import load_config_with_warnings
from hub.config.problems import ConfigError

EXIT_OK = 0
EXIT_INVALID = 1


def check_file(
    path: str | Path,
    environ: Mapping[str, str] | None = None,
    against_data: Path | None = None,
    sample: int | None = None,
) -> tuple[int, str]:
    try:
        config, warnings = load_config_with_warnings(path, environ)
    except ConfigError as exc:
        # Labels are read from the routes: there are none to compare until the file loads.
        after = f"\nnote: {against_data} not compared: fix the problems above first" if against_data else ""
        return EXIT_INVALID, str(exc) + after
    counts = ", ".join(
        [
            _count(len(config.sources), "source"),
            _count(len(config.destinations), "destination"),
            _count(len(config.routes), "route"),
        ]
    )
    lines = [
        f"{path}: OK — {counts}",
        *_store_line(config.store, environ),
        *(f"warning: {w}" for w in warnings),
    ]
    code = EXIT_OK
    if against_data is not None:
        # Imported here: it brings the database drivers, which a plain check does without.
        from hub.config.label_check import DEFAULT_SAMPLE, check_against_data

        env = os.environ if environ is None else environ
        code, found = check_against_data(config, against_data, env, sample or DEFAULT_SAMPLE)
        lines += found
    return code, "\n".join(lines)


def _store_line(setting: str | None, environ: Mapping[str, str] | None) -> list[str]:
    """Which store a hub started with this file would use (its key: no credentials), if not the default."""
    from hub.store.location import ENV, BadStoreSetting, store_from_setting

    env = dict(os.environ if environ is None else environ)
    if not (setting or env.get(ENV)):
        return []
    try:
        store = store_from_setting(setting, Path(env.get("HOOKHUB_DATA_DIR", ".hookhub")), env)
    except BadStoreSetting as exc:  # HOOKHUB_STORE's: the file itself is valid
        return [f"warning: {ENV}: {exc}"]
    return [f"store: {store.key}" + (f" ({ENV} overrides store:)" if env.get(ENV) and setting else "")]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
