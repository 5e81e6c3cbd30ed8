"""`hookhub schema`: print the JSON Schema of connectors.yaml (hub/config/schema.py) for editors.

    hookhub schema > connectors.schema.json

docs/connectors.schema.json is this output, checked by tests/test_config_schema.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

ArgumentAdder = Callable[[argparse.ArgumentParser], None]


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    data_dir_arg: ArgumentAdder,
    config_arg: ArgumentAdder,
) -> None:
    sub.add_parser(
        "schema",
        help="print a JSON Schema of connectors.yaml for editors (completion, hover docs, squiggles)",
        description="Print a JSON Schema of connectors.yaml, generated from hookhub's models. Point"
        " a YAML language server at it with `# yaml-language-server: $schema=connectors.schema.json`.",
    )


def cmd_schema(args: argparse.Namespace) -> int:
    from hub.config.schema import render

    sys.stdout.write(render())
    return 0


HANDLERS = {"schema": cmd_schema}
