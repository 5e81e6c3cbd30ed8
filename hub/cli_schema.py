"""`hookhub schema`: print the JSON Schema of connectors.yaml (hub/config/schema.py) for editors.

    hookhub schema > connectors.schema.json
    hookhub schema --path        # the copy installed with hookhub, for editor settings

docs/connectors.schema.json and the installed copy (hub/config/connectors.schema.json, package
data) are this output, checked by tests/test_config_schema.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path

ArgumentAdder = Callable[[argparse.ArgumentParser], None]
SHIPPED_NAME = "connectors.schema.json"


def shipped_schema() -> Path:
    """The schema file installed with the package (in a checkout or editable install: the repo's)."""
    return Path(str(resources.files("hub.config").joinpath(SHIPPED_NAME))).resolve()


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    data_dir_arg: ArgumentAdder,
    config_arg: ArgumentAdder,
) -> None:
    parser = sub.add_parser(
        "schema",
        help="print a JSON Schema of connectors.yaml for editors (completion, hover docs, squiggles)",
        description="Print a JSON Schema of connectors.yaml, generated from hookhub's models. Point"
        " a YAML language server at it with `# yaml-language-server: $schema=connectors.schema.json`.",
    )
    parser.add_argument(
        "--path",
        action="store_true",
        help="print the absolute path of the schema installed with hookhub instead (for editor settings"
        " such as VS Code's yaml.schemas; upgrading hookhub updates the file)",
    )


def cmd_schema(args: argparse.Namespace) -> int:
    if args.path:
        path = shipped_schema()
        if not path.is_file():
            # A packaging mistake, not the user's: say what is missing rather than print a dead path.
            print(
                f"hookhub: {path} is missing from this installation; use `hookhub schema > FILE`",
                file=sys.stderr,
            )
            return 1
        print(path)
        return 0
    from hub.config.schema import render

    sys.stdout.write(render())
    return 0


HANDLERS = {"schema": cmd_schema}
