"""`mbc-cds load`: POST the sample patients (transaction Bundles, dates shifted to now) to a FHIR server,
printing progress; any failure is one line with the server's own words (OperationOutcome diagnostics)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import httpx
import orjson

from app.bundles import bundle_resources, patient_id_of
from app.cli.errors import CliError
from app.cli.parsing import Subcommands
from cds_hooks.paging import FHIR_JSON, all_diagnostics, error_text, fhir_headers

LOAD_TIMEOUT = httpx.Timeout(120.0, connect=10.0)  # public sandboxes take their time over transactions


def register(sub: Subcommands) -> None:
    p = sub.add_parser("load", help="POST the sample patients (transaction Bundles) to a FHIR server",
                       description="POST each sample patient as a transaction Bundle, dates shifted to "
                                   "now, to the FHIR server base (HAPI FHIR, Medplum, ...).")
    p.add_argument("--fhir-server", required=True, help="FHIR base URL, e.g. https://hapi.fhir.org/baseR4")
    p.add_argument("--token", help="bearer token for the FHIR server")
    p.add_argument("--sample", action="extend", nargs="+", metavar="ID",
                   help="only these sample ids (default: all; see GET /demo/samples)")
    p.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                   help="first wait up to SECONDS for the server's /metadata (a starting HAPI takes a minute)")
    p.set_defaults(func=cmd_load)


@dataclass(frozen=True)
class Loaded:
    sample_id: str
    patient_id: str
    entries: int
    seconds: float


def _patient_id_from_response(request_bundle: Mapping[str, Any], response: Any) -> str | None:
    """The server's id of the Patient: from the transaction-response entry at the Patient's position."""
    req_entries = request_bundle.get("entry") or []
    resp_entries = response.get("entry") if isinstance(response, dict) else None
    if not isinstance(resp_entries, list):
        return None
    for i, entry in enumerate(req_entries):
        if (entry.get("resource") or {}).get("resourceType") != "Patient" or i >= len(resp_entries):
            continue
        resp_entry = resp_entries[i] if isinstance(resp_entries[i], dict) else {}
        location = str((resp_entry.get("response") or {}).get("location") or "")
        parts = location.split("?", 1)[0].split("/")
        if "Patient" in parts:
            idx = len(parts) - 1 - parts[::-1].index("Patient")
            if idx + 1 < len(parts) and parts[idx + 1]:
                return parts[idx + 1]
        res = resp_entry.get("resource")
        if isinstance(res, dict) and res.get("id"):
            return str(res["id"])
    return None


def _failed_entries(response: Any) -> list[str]:
    out = []
    for i, entry in enumerate((response or {}).get("entry") or [] if isinstance(response, dict) else []):
        status = str(((entry or {}).get("response") or {}).get("status") or "")
        if status and not status.startswith("2"):
            diag = all_diagnostics(((entry or {}).get("response") or {}).get("outcome"))
            out.append(f"entry {i}: {status}" + (f" ({diag})" if diag else ""))
    return out


def wait_for_server(fhir_server: str, seconds: float, *, token: str | None = None, out: TextIO | None = None,
                    client: httpx.Client | None = None, interval: float = 3.0) -> None:
    """Poll `{base}/metadata` until the server answers with a CapabilityStatement (HAPI takes a minute or two
    to start); CliError after `seconds`."""
    out = out or sys.stdout
    url = f"{fhir_server.rstrip('/')}/metadata"
    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(30.0, connect=5.0), follow_redirects=False)
    started = time.monotonic()
    last = "no answer yet"
    try:
        while True:
            try:
                resp = http.get(url, headers=fhir_headers(token))
                if resp.is_success and resp.json().get("resourceType") == "CapabilityStatement":
                    print(f"FHIR server ready after {time.monotonic() - started:.0f} s", file=out, flush=True)
                    return
                last = f"HTTP {resp.status_code}"
            except (httpx.HTTPError, ValueError, AttributeError) as exc:
                last = type(exc).__name__
            elapsed = time.monotonic() - started
            if elapsed >= seconds:
                raise CliError(f"error: the FHIR server at {url} was not ready after {seconds:g} s ({last})", code=1)
            print(f"waiting for the FHIR server ({last}, {elapsed:.0f} s) ...", file=out, flush=True)
            time.sleep(min(interval, max(0.0, seconds - elapsed)))
    finally:
        if own:
            http.close()


def load_samples(fhir_server: str, *, token: str | None = None, sample_ids: Sequence[str] | None = None,
                 now: datetime | None = None, out: TextIO | None = None,
                 client: httpx.Client | None = None) -> list[Loaded]:
    """POST each sample's transaction Bundle (dates shifted to `now`) to the server base; CliError on the
    first failure."""
    from app.samples import list_samples, sample_bundle

    now = now or datetime.now(UTC)
    out = out or sys.stdout
    known = [s["id"] for s in list_samples()]
    ids = list(sample_ids) if sample_ids else known
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise CliError(f"error: unknown sample id(s) {', '.join(unknown)}; known: {', '.join(known)}")
    base = fhir_server.rstrip("/")
    headers = {**fhir_headers(token), "Content-Type": FHIR_JSON}
    own = client is None
    http = client or httpx.Client(timeout=LOAD_TIMEOUT, follow_redirects=False)
    results: list[Loaded] = []
    try:
        for n, sid in enumerate(ids, 1):
            bundle = sample_bundle(sid, now=now)
            entries = len(bundle.get("entry") or [])
            print(f"[{n}/{len(ids)}] {sid}: POST transaction ({entries} resources) ...", end=" ", file=out,
                  flush=True)
            t0 = time.perf_counter()
            try:
                resp = http.post(base, content=orjson.dumps(bundle), headers=headers)
            except httpx.HTTPError as exc:
                print("failed", file=out, flush=True)
                raise CliError(f"error: {sid}: cannot reach {base}: {type(exc).__name__}: {exc}", code=1) from None
            seconds = time.perf_counter() - t0
            if not resp.is_success:
                print("failed", file=out, flush=True)
                raise CliError(f"error: {sid}: {error_text(resp)}", code=1)
            try:
                doc = resp.json()
            except ValueError:
                doc = None
            failed = _failed_entries(doc)
            if failed:
                print("failed", file=out, flush=True)
                raise CliError(f"error: {sid}: the server refused " + "; ".join(failed[:5]), code=1)
            local_pid = patient_id_of(bundle_resources(bundle))
            pid = _patient_id_from_response(bundle, doc) or local_pid
            print(f"ok in {seconds:.1f} s, Patient/{pid}", file=out, flush=True)
            results.append(Loaded(sid, pid, entries, seconds))
    finally:
        if own:
            http.close()
    return results


def cmd_load(args: argparse.Namespace) -> int:
    if args.wait:
        wait_for_server(args.fhir_server, args.wait, token=args.token)
    results = load_samples(args.fhir_server, token=args.token, sample_ids=args.sample)
    print(f"\nloaded {len(results)} patient(s) into {args.fhir_server.rstrip('/')}. Fire the hook for one "
          "(BASE: where your mbc-cds listens, as `mbc-cds serve` or `mbc-cds demo` printed it):")
    if results:
        print(f"  mbc-cds hook --service BASE/cds-services/mbc-palliative-care "
              f"--fhir-server {args.fhir_server.rstrip('/')} --patient {results[0].patient_id}")
    return 0
