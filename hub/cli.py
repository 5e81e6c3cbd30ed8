"""The `hookhub` command line."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

from hub.cli_worker import lease_arg
from hub.cpu_priority import PRIORITIES

DEFAULT_CONFIG = "connectors.yaml"
DEFAULT_DATA_DIR = ".hookhub"
DEFAULT_PORT = 8000


def _config_arg(parser: argparse.ArgumentParser, positional: bool = False) -> None:
    default = os.environ.get("HOOKHUB_CONFIG", DEFAULT_CONFIG)
    if positional:
        parser.add_argument("file", nargs="?", default=default, help=f"config file (default {default})")
    else:
        parser.add_argument(
            "--config", default=default, help=f"config file (default {default}, env HOOKHUB_CONFIG)"
        )


def _data_dir_arg(parser: argparse.ArgumentParser) -> None:
    default = os.environ.get("HOOKHUB_DATA_DIR", DEFAULT_DATA_DIR)
    parser.add_argument(
        "--data-dir", default=default, help=f"spool and state (default {default}, env HOOKHUB_DATA_DIR)"
    )


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hookhub", description="Webhook integration hub for online forms.")
    parser.add_argument("--version", action="version", version=f"hookhub {metadata.version('hookhub')}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="receive webhooks and deliver them")
    serve.add_argument("--host", default=os.environ.get("HOOKHUB_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("HOOKHUB_PORT", DEFAULT_PORT)))
    _config_arg(serve)
    _data_dir_arg(serve)
    serve.add_argument(
        "--durability",
        choices=["full", "normal"],
        default="full",
        help="full: fsync every commit (survives power loss); normal: survives process crashes",
    )
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--log-format",
        choices=["auto", "text", "json"],
        default=None,
        help="log lines on stderr as text or JSON (default: $HOOKHUB_LOG_FORMAT, else text on a terminal)",
    )
    serve.add_argument("--no-dispatch", action="store_true", help="only receive and spool; do not deliver")
    serve.add_argument(
        "--delivery",
        choices=["process", "thread"],
        default="process",
        help="where delivery runs: a process of its own at a lower CPU priority, so receiving wins"
        " during bursts (default), or a thread of the receiver's process (README: Peak load)",
    )
    serve.add_argument(
        "--delivery-priority",
        choices=PRIORITIES,
        default="idle",
        help="how delivery yields the CPU to receiving: idle (Linux SCHED_IDLE: only CPU time nothing"
        " else wants; the default) or low (nice +10: a share even when other services keep the CPUs busy)",
    )
    lease_arg(serve)
    serve.add_argument("--admin-host", default="127.0.0.1", help="with --admin-port: the console's address")
    serve.add_argument("--admin-port", type=int, help="serve the admin console here, not at --port's /admin")

    check = sub.add_parser("check", help="validate connectors.yaml")
    check.add_argument(
        "file",
        nargs="?",
        default=None,
        help="config file (the same as --config; this wins if both are given)",
    )
    _config_arg(check)
    check.add_argument(
        "--against-data",
        metavar="DIR",
        type=Path,
        default=None,
        help="also warn about `when` answer labels no recent stored submission of the route's"
        " sources had (DIR: a hub data dir, or the store HOOKHUB_STORE / store: names; read only)",
    )
    check.add_argument(
        "--sample",
        metavar="N",
        type=_positive,
        default=500,
        help="with --against-data: how many recent submissions of each source to look at (default 500)",
    )

    sub.add_parser("providers", help="list connectors and their verification schemes")

    send = sub.add_parser("send-test", help="post a correctly signed sample submission to a running hub")
    send.add_argument(
        "target", nargs="?", help="a source id from the config, or a provider id with exactly one source"
    )
    send.add_argument("--url", default=None, help=f"hub base URL (default http://127.0.0.1:{DEFAULT_PORT})")
    _config_arg(send)
    from hub.alerts.send_test import add_arguments as add_alert_arguments

    add_alert_arguments(send)

    from hub.cli_add import add_parsers as add_add_parsers
    from hub.cli_admin import add_parsers
    from hub.cli_erase import add_parser as add_erase
    from hub.cli_reconcile import add_parsers as add_reconcile_parsers
    from hub.cli_schema import add_parsers as add_schema_parsers
    from hub.cli_store import add_parser as add_migrate
    from hub.cli_submissions import add_parsers as add_submission_parsers
    from hub.cli_test_route import add_parser as add_test_route
    from hub.cli_worker import add_parser as add_worker
    from hub.console.cli import add_parser as add_console

    add_parsers(sub, _data_dir_arg, _config_arg)
    add_submission_parsers(sub, _data_dir_arg, _config_arg)
    add_console(sub)
    add_erase(sub, _data_dir_arg)
    add_migrate(sub, _data_dir_arg, _config_arg)
    add_test_route(sub, _data_dir_arg, _config_arg)
    add_worker(sub, _data_dir_arg, _config_arg)
    add_reconcile_parsers(sub, _data_dir_arg, _config_arg)
    add_schema_parsers(sub, _data_dir_arg, _config_arg)
    add_add_parsers(sub, _config_arg)
    return parser


def main(argv: list[str] | None = None) -> int:
    from hub.cli_add import HANDLERS as ADD_HANDLERS
    from hub.cli_admin import HANDLERS
    from hub.cli_erase import cmd_erase
    from hub.cli_reconcile import HANDLERS as RECONCILE_HANDLERS
    from hub.cli_schema import HANDLERS as SCHEMA_HANDLERS
    from hub.cli_store import cmd_migrate
    from hub.cli_submissions import HANDLERS as SUBMISSION_HANDLERS
    from hub.cli_test_route import cmd_test_route
    from hub.cli_worker import cmd_worker
    from hub.console.cli import cmd_admin

    args = build_parser().parse_args(argv)
    handler = {
        **HANDLERS,
        **SUBMISSION_HANDLERS,
        **RECONCILE_HANDLERS,
        **SCHEMA_HANDLERS,
        **ADD_HANDLERS,
        "admin": cmd_admin,
        "test-route": cmd_test_route,
        "erase": cmd_erase,
        "migrate": cmd_migrate,
        "serve": cmd_serve,
        "worker": cmd_worker,
        "check": cmd_check,
        "providers": cmd_providers,
        "send-test": cmd_send_test,
    }[args.command]
    return handler(args)


def cmd_check(args: argparse.Namespace) -> int:
    from hub.config.check import check_file

    code, text = check_file(args.file or args.config, against_data=args.against_data, sample=args.sample)
    print(text, file=sys.stdout if code == 0 else sys.stderr)
    return code


def cmd_providers(args: argparse.Namespace) -> int:
    from connectors import all_connectors

    connectors = all_connectors()
    width = max(len(c.provider) for c in connectors)
    for connector in connectors:
        types = ", ".join(sorted(connector.content_types))
        print(f"{connector.provider:<{width}}  {connector.scheme:<24}  {connector.title} [{types}]")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from hub.config.loader import ConfigError
    from hub.logs import setup_logging
    from hub.runtime import ConfigHolder
    from hub.server import Hub, serve

    setup_logging(args.log_level, args.log_format)
    try:
        holder = ConfigHolder(Path(args.config))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        print(
            "hookhub: not starting: fix the problems above (`hookhub check` shows them too)", file=sys.stderr
        )
        return 1
    except OSError as exc:
        print(f"{args.config}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    from hub.cli_worker import StoreNotReady, open_store
    from hub.server import listen
    from hub.spool.lock import DataDirBusy, DataDirLock

    try:
        store = open_store(holder.current, Path(args.data_dir))
    except StoreNotReady as exc:
        print(f"hookhub: not starting: {exc}", file=sys.stderr)
        return 1
    # The data dir (of a SQLite store: receivers and workers share a PostgreSQL one), then the
    # port, before anything starts: a hub that cannot own both says so in one line and exits 1
    # (and never takes over a live hub's claims).
    lock = DataDirLock(Path(args.data_dir))
    try:
        if store.dialect == "sqlite":
            lock.acquire(args.port)
    except DataDirBusy as exc:
        print(f"hookhub: not starting: {exc}", file=sys.stderr)
        return 1
    try:
        sock = listen(args.host, args.port)
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        print(f"hookhub: not starting: cannot listen on {args.host}:{args.port}: {why}", file=sys.stderr)
        return 1
    hub = Hub(
        config=holder,
        data_dir=Path(args.data_dir),
        durability=args.durability,
        port=args.port,
        store=store,
        delivery_priority=args.delivery_priority,
    )
    if args.no_dispatch or args.delivery == "thread":
        if not args.no_dispatch:
            from hub.dispatch import attach_dispatcher

            attach_dispatcher(hub, lease_seconds=args.lease)
        from hub.alerts.evaluator import attach_alerts

        attach_alerts(hub)
    else:
        # The delivery process evaluates the alerts too: they need the dispatcher's health.
        from hub.dispatch.delivery_process import attach_delivery_process

        attach_delivery_process(hub, Path(args.config), args.lease)
    from hub.console.serve import serve_separately

    if args.admin_port is not None and not serve_separately(hub, args.admin_host, args.admin_port):
        return 1
    print(
        f"hookhub: listening on http://{args.host}:{args.port}/hooks/<source id> "
        f"(sources: {', '.join(sorted(holder.sources)) or 'none'}; store {store.key})",
        file=sys.stderr,
    )
    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the signal to the
    # previous handler; answering it with a normal exit makes a clean stop exit 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt):
        serve(hub, args.host, args.port, sock)
    return 0


def cmd_send_test(args: argparse.Namespace) -> int:
    if args.alert is not None:
        from hub.alerts.send_test import cmd_send_test_alert

        return cmd_send_test_alert(args)
    if args.target is None:
        print("hookhub send-test: name a source (or --alert KIND)", file=sys.stderr)
        return 2
    import httpx

    from hub.config.loader import ConfigError, load_config
    from hub.runtime import prepare_sources

    try:
        config = load_config(Path(args.config))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    sources = prepare_sources(config)
    source = sources.get(args.target)
    if source is None:
        matching = [s for s in sources.values() if s.connector.provider == args.target]
        if len(matching) != 1:
            known = ", ".join(f"{s.id} ({s.connector.provider})" for s in sources.values()) or "none"
            why = "several sources use" if matching else "no source or provider named"
            print(f"hookhub send-test: {why} {args.target!r}; sources: {known}", file=sys.stderr)
            return 2
        source = matching[0]
    base = (args.url or config.server.public_base_url or f"http://127.0.0.1:{DEFAULT_PORT}").rstrip("/")
    post_url = f"{base}/hooks/{source.id}"
    signed_url = source.config.public_url or post_url
    if not source.config.secrets and source.connector.requires_secret:
        print(f"hookhub send-test: source {source.id!r} has no secret to sign with", file=sys.stderr)
        return 2
    request = source.connector.sample_request(source.config, signed_url, time.time())
    # URL-token schemes carry the credential in the query of the sample's URL.
    query = urlsplit(request.url).query
    if query:
        post_url = f"{post_url}?{query}"
    try:
        response = httpx.post(post_url, content=request.body, headers=dict(request.headers), timeout=10)
    except httpx.HTTPError as exc:
        print(
            f"hookhub send-test: cannot reach {post_url}: {exc} (is `hookhub serve` running?)",
            file=sys.stderr,
        )
        return 1
    shown = post_url.split("?", 1)[0] + ("?..." if query else "")  # never print the token
    print(f"POST {shown} -> {response.status_code} {response.text}")
    return 0 if response.is_success else 1


if __name__ == "__main__":
    sys.exit(main())
