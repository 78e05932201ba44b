"""`mbc-cds serve`: run the CDS Hooks service (uvicorn)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from app.cli.config import load_settings
from app.cli.database import check_database
from app.cli.errors import CliError
from app.cli.parsing import Subcommands


def register(sub: Subcommands) -> None:
    from app.serving import DEFAULT_LIMIT_CONCURRENCY, DEFAULT_MAX_HEADER_BYTES, DEFAULT_TIMEOUT_KEEP_ALIVE

    p = sub.add_parser("serve", help="run the CDS Hooks service (uvicorn)",
                       description="Run the service with the settings in MBC_CDS_* variables (or .env); the "
                                   "database is migrated at start-up.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level (default info)")
    p.add_argument("--limit-concurrency", type=int, default=DEFAULT_LIMIT_CONCURRENCY,
                   help="connections and requests at once per worker; 503 beyond (default %(default)s)")
    p.add_argument("--timeout-keep-alive", type=int, default=DEFAULT_TIMEOUT_KEEP_ALIVE,
                   help="seconds an idle keep-alive connection stays open (default %(default)s)")
    p.add_argument("--timeout-header", type=float, default=None,
                   help="seconds a connection has to send its request headers (default: "
                        "MBC_CDS_HEADER_TIMEOUT_SECONDS, 10)")
    p.add_argument("--max-header-bytes", type=int, default=DEFAULT_MAX_HEADER_BYTES,
                   help="largest request line plus headers, bytes (default %(default)s)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    # What start-up would fail on, checked here so that it is one line and not a traceback inside uvicorn's.
    from app.safety import UnsafeConfiguration, check_configuration
    from app.serving import ServeOptions, uvicorn_kwargs
    from app.settings import get_settings

    if args.timeout_header is not None:
        os.environ["MBC_CDS_HEADER_TIMEOUT_SECONDS"] = str(args.timeout_header)  # reaches worker processes
        get_settings.cache_clear()
    settings = load_settings()
    clients: list[Any] = []
    if settings.require_jwt and settings.clients_file:
        from cds_hooks.auth import load_clients

        try:
            clients = load_clients(settings.clients_file)
        except ValueError as exc:
            raise CliError(f"error: {exc}\nFix MBC_CDS_CLIENTS_FILE (docs/security.md shows the format).") from None
    try:
        check_configuration(settings, clients)
    except UnsafeConfiguration as exc:
        raise CliError(f"error: {exc}") from None
    check_database(settings.database_url, hint="set MBC_CDS_DATABASE_URL")

    options = ServeOptions(host=args.host, port=args.port, workers=args.workers, log_level=args.log_level,
                           limit_concurrency=args.limit_concurrency, timeout_keep_alive=args.timeout_keep_alive,
                           max_header_bytes=args.max_header_bytes)
    uvicorn.run("app.main:app", **uvicorn_kwargs(options, settings))
    return 0
