"""`mbc-cds demo`: every sample patient's cards, then the service with embedded SQLite, JWT off and the card
viewer; the banner it prints last, with a CDS Hooks Sandbox URL."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from app.cli.config import load_settings
from app.cli.database import DEMO_DATABASE_URL, shown_url
from app.cli.errors import CliError
from app.cli.evaluate import evaluate_bundle
from app.cli.output import render_cards_table
from app.cli.parsing import Subcommands

SERVICE_PATH = "/cds-services/mbc-palliative-care"
# The public CDS Hooks Sandbox and the URL query parameters it reads at start-up (cds-hooks/sandbox README,
# "Pre-configuration via URL parameters"; src/retrieve-data-helpers/fhir-metadata-retrieval.js, patient-retrieval.js)
SANDBOX_URL = "https://sandbox.cds-hooks.org/"
LOCAL_FHIR_SERVER = "http://127.0.0.1:8090"
DEMO_PATIENT = "mbc-demo-01"


def register(sub: Subcommands) -> None:
    p = sub.add_parser("demo", help="run with embedded SQLite, JWT off, sample patients and the card viewer",
                       description=f"Print every sample patient's cards, then serve the card viewer with JWT "
                                   f"verification off and SQLite at {DEMO_DATABASE_URL} (synthetic data only).")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    p.add_argument("--fhir-server", default=LOCAL_FHIR_SERVER,
                   help="FHIR server named in the printed CDS Hooks Sandbox URL (default: the local test server)")
    p.set_defaults(func=cmd_demo)


def sandbox_launch_url(discovery_url: str, fhir_server: str, patient_id: str = DEMO_PATIENT,
                       sandbox: str = SANDBOX_URL) -> str:
    """A CDS Hooks Sandbox URL that opens with this service, FHIR server and patient already configured."""
    params = {"serviceDiscoveryURL": discovery_url, "fhirServiceUrl": fhir_server.rstrip("/"),
              "patientId": patient_id}
    return sandbox + "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())


def sandbox_hint_lines(service_base: str, fhir_server: str = LOCAL_FHIR_SERVER) -> list[str]:
    """What `mbc-cds demo` prints for trying the service in the CDS Hooks Sandbox (a browser client)."""
    return [
        f"  sandbox:      {sandbox_launch_url(f'{service_base}/cds-services', fhir_server)}",
        "                (FHIR side: `npm ci --prefix tests/fhirserver && node tests/fhirserver/server.mjs "
        f"{urlsplit(fhir_server).port or 8090}`,",
        f"                 then `mbc-cds load --fhir-server {fhir_server} --wait 30`; see docs/integrators.md)",
    ]


def demo_banner_lines(base: str, database_url: str, fhir_server: str | None = None) -> list[str]:
    """What `mbc-cds demo` prints last, under the cards, so that it is on screen when the server is up.

    One function so that other entry points (a sandbox URL, an order-sign link) add a line here.
    """
    return [
        "",
        f"mbc-cds demo is running: JWT verification OFF, synthetic patients only, database {database_url}",
        f"  card viewer:      {base}/",
        f"  discovery:        {base}/cds-services",
        f"  fire a hook:      curl -s {base}/demo/request/mbc-demo-01 | curl -s -X POST {base}{SERVICE_PATH} "
        "-H 'Content-Type: application/json' --data @- | python3 -m json.tool",
        "  feedback report:  mbc-cds feedback-report --demo   (reads this demo's database)",
        "  stop:             Ctrl+C",
    ] + (sandbox_hint_lines(base, fhir_server) if fhir_server else [])


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def cmd_demo(args: argparse.Namespace) -> int:
    os.environ.setdefault("MBC_CDS_REQUIRE_JWT", "false")
    os.environ.setdefault("MBC_CDS_DATABASE_URL", DEMO_DATABASE_URL)
    from app.settings import get_settings

    get_settings.cache_clear()
    settings = load_settings()
    if not _port_free(args.host, args.port):
        raise CliError(f"error: {args.host}:{args.port} is already in use (another demo or server?): "
                       "stop it, or pick another port with --port")
    base = f"http://{args.host}:{args.port}"
    try:
        from app.samples import list_samples, sample_bundle
    except ImportError:
        pass
    else:
        now = datetime.now(UTC)
        for sample in list_samples()[:20]:
            cards = evaluate_bundle(sample_bundle(sample["id"], now=now), now=now)
            print(f"\n== {sample['id']}: {sample.get('title', '')}")
            print(render_cards_table(cards))
    banner = demo_banner_lines(base, shown_url(settings.database_url), args.fhir_server)
    _serve_then_announce(args.host, args.port, banner)
    return 0


def _serve_then_announce(host: str, port: int, lines: list[str]) -> None:
    """Run uvicorn and print `lines` once it is listening: after the start-up log lines, so the URLs stay in view."""
    import threading
    import time

    import uvicorn

    from app.serving import ServeOptions, uvicorn_kwargs
    from app.settings import get_settings

    # The demo gets the same server hardening as `serve` (no `server` header, proxy headers off, header timeout).
    options = ServeOptions(host=host, port=port, log_level="warning")
    server = uvicorn.Server(uvicorn.Config("app.main:app", **uvicorn_kwargs(options, get_settings())))

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            sys.stderr.flush()
            print("\n".join(lines), flush=True)

    threading.Thread(target=announce, name="demo-banner", daemon=True).start()
    server.run()
