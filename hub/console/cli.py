"""`hookhub admin hash-password`: the value for admin.password_hash (README "Admin console")."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from hub.console.passwords import hash_password

MIN_LENGTH = 12


def add_parser(sub: Any) -> None:
    admin = sub.add_parser("admin", help="the web console's credentials")
    actions = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    hashing = actions.add_parser(
        "hash-password",
        help="print a scrypt hash of a password for admin.password_hash (asked twice, not echoed)",
    )
    hashing.add_argument(
        "--stdin", action="store_true", help="read the password from the first line of standard input"
    )


def cmd_admin(args: argparse.Namespace) -> int:
    if args.stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("hookhub admin hash-password: the two passwords differ; nothing printed", file=sys.stderr)
            return 1
    if len(password) < MIN_LENGTH:
        print(f"hookhub admin hash-password: use at least {MIN_LENGTH} characters", file=sys.stderr)
        return 2
    print(hash_password(password))
    print(
        "Put it in the environment (e.g. HOOKHUB_ADMIN_PASSWORD_HASH) and in connectors.yaml:\n"
        "  admin:\n    password_hash: ${HOOKHUB_ADMIN_PASSWORD_HASH}",
        file=sys.stderr,
    )
    return 0
