"""Integrator tools: `mbc-cds load` (sample patients into a FHIR server) and `mbc-cds hook` (fire patient-view
the way an EHR does). Also the helpers that turn a patient's Bundle into a CDS Hooks prefetch (the viewer's
demo routes and the tests use them).

Both commands talk plain HTTP with httpx (synchronous) and print progress; they exit 1 on any failure, with the
server's own words (OperationOutcome diagnostics or the service's JSON error).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import orjson

from cds_hooks.urls import encode_request_url

FHIR_JSON = "application/fhir+json"
DEFAULT_USER = "Practitioner/example"
LOAD_TIMEOUT = httpx.Timeout(120.0, connect=10.0)  # public sandboxes take their time over transactions
READ_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# The public CDS Hooks Sandbox and the URL query parameters it reads at start-up (cds-hooks/sandbox README,
# "Pre-configuration via URL parameters"; src/retrieve-data-helpers/fhir-metadata-retrieval.js, patient-retrieval.js)
SANDBOX_URL = "https://sandbox.cds-hooks.org/"
LOCAL_FHIR_SERVER = "http://127.0.0.1:8090"
DEMO_PATIENT = "mbc-demo-01"
MAX_PAGES = 50

ORDER_HOOKS = ("order-select", "order-sign")


class CommandError(Exception):
    """A failure the command reports on stderr; exit code 1, or 2 for usage and configuration errors."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------------------------------------------------
# Bundle -> resources -> prefetch (shared with the viewer's demo routes)
# ----------------------------------------------------------------------------------------------------------


def bundle_resources(bundle: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The resources of a Bundle as a FHIR server would store them: a resource without an id gets the id of
    its `urn:uuid:` fullUrl (or of its PUT url), and `urn:uuid:` references are rewritten to `Type/id`.
    Works for transaction, batch, collection and searchset Bundles; the input is not modified."""
    if bundle.get("resourceType") != "Bundle":
        raise ValueError("not a FHIR Bundle")
    entries = [e for e in bundle.get("entry") or [] if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    resources: list[dict[str, Any]] = []
    ref_map: dict[str, str] = {}
    for entry in entries:
        res = orjson.loads(orjson.dumps(entry["resource"]))  # deep copy
        rtype = res.get("resourceType")
        if not isinstance(rtype, str):
            continue
        full_url = entry.get("fullUrl")
        if not isinstance(full_url, str):
            full_url = ""
        if not res.get("id"):
            request = entry.get("request")
            if not isinstance(request, dict):
                request = {}
            url = str(request.get("url") or "")
            if request.get("method") == "PUT" and url.startswith(f"{rtype}/") and "?" not in url:
                res["id"] = url.split("/", 1)[1]
            elif full_url.startswith("urn:uuid:"):
                res["id"] = full_url[len("urn:uuid:"):]
        if full_url and res.get("id"):
            ref_map[full_url] = f"{rtype}/{res['id']}"
        resources.append(res)
    if ref_map:
        resources = [_rewrite_refs(r, ref_map) for r in resources]
    return resources


def _rewrite_refs(value: Any, ref_map: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "reference" and isinstance(v, str) and v in ref_map:
                out[k] = ref_map[v]
            else:
                out[k] = _rewrite_refs(v, ref_map)
        return out
    if isinstance(value, list):
        return [_rewrite_refs(v, ref_map) for v in value]
    return value


def resource_type_of_template(template: str) -> str:
    return template.split("?", 1)[0].split("/", 1)[0]


def prefetch_from_resources(resources: Iterable[Mapping[str, Any]], templates: Mapping[str, str],
                            patient_id: str) -> dict[str, Any]:
    """One prefetch value per discovery key, as an EHR answers the templates: a read template
    (`Patient/{{context.patientId}}`) gets the resource or null, a search template a searchset Bundle."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        by_type.setdefault(str(r.get("resourceType")), []).append(dict(r))
    prefetch: dict[str, Any] = {}
    for key, template in templates.items():
        rtype = resource_type_of_template(template)
        items = by_type.get(rtype, [])
        if "?" not in template and "/" in template.split("?", 1)[0]:  # a read
            match = [r for r in items if r.get("id") == patient_id] if rtype == "Patient" else items[:1]
            prefetch[key] = match[0] if match else None
        else:
            prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "total": len(items),
                             "entry": [{"resource": r, "search": {"mode": "match"}} for r in items]}
    return prefetch


def patient_id_of(resources: Iterable[Mapping[str, Any]]) -> str:
    for r in resources:
        if r.get("resourceType") == "Patient" and r.get("id"):
            return str(r["id"])
    raise ValueError("no Patient with an id in the Bundle")


def patient_view_request(patient_id: str, *, fhir_server: str | None = None, token: str | None = None,
                         prefetch: dict[str, Any] | None = None, user: str = DEFAULT_USER,
                         hook_instance: str | None = None, hook: str = "patient-view",
                         draft_orders: dict[str, Any] | None = None,
                         selections: list[str] | None = None) -> dict[str, Any]:
    """A hook request body: patient-view, or order-select / order-sign with `draft_orders` (a Bundle) and, for
    order-select, the `selections` (default: every draft with an id)."""
    body: dict[str, Any] = {"hook": hook, "hookInstance": hook_instance or str(uuid.uuid4())}
    if fhir_server:
        body["fhirServer"] = fhir_server
        if token:
            body["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer", "expires_in": 300,
                                         "scope": "patient/*.read", "subject": "mbc-cds-cli"}
    body["context"] = {"patientId": patient_id, "userId": user}
    if hook in ORDER_HOOKS:
        drafts = draft_orders or {"resourceType": "Bundle", "type": "collection", "entry": []}
        body["context"]["draftOrders"] = drafts
        if hook == "order-select":
            body["context"]["selections"] = selections if selections is not None else [
                f"{r['resourceType']}/{r['id']}" for r in bundle_resources(drafts) if r.get("id")]
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def demo_request_for_bundle(bundle: Mapping[str, Any], templates: Mapping[str, str],
                            hook_instance: str | None = None) -> dict[str, Any]:
    """A complete patient-view request (prefetch for every discovery key) for one patient's Bundle."""
    resources = bundle_resources(bundle)
    pid = patient_id_of(resources)
    return patient_view_request(pid, prefetch=prefetch_from_resources(resources, templates, pid),
                                hook_instance=hook_instance)


# ----------------------------------------------------------------------------------------------------------
# output helpers
# ----------------------------------------------------------------------------------------------------------


def _diagnostics(doc: Any) -> str:
    if not isinstance(doc, dict) or doc.get("resourceType") != "OperationOutcome":
        return ""
    texts = []
    for issue in doc.get("issue") or []:
        if not isinstance(issue, dict):
            continue
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or issue.get("code")
        if text:
            texts.append(f"{issue.get('severity', 'error')}: {' '.join(str(text).split())}")
    return "; ".join(texts)


def _error_text(resp: httpx.Response) -> str:
    try:
        doc = resp.json()
    except ValueError:
        doc = None
    diag = _diagnostics(doc)
    if diag:
        return f"HTTP {resp.status_code}: {diag}"
    body = resp.text.strip().replace("\n", " ")
    return f"HTTP {resp.status_code}: {body[:300]}" if body else f"HTTP {resp.status_code}"


def _fhir_headers(token: str | None) -> dict[str, str]:
    headers = {"Accept": FHIR_JSON}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


# ----------------------------------------------------------------------------------------------------------
# load
# ----------------------------------------------------------------------------------------------------------


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
            diag = _diagnostics(((entry or {}).get("response") or {}).get("outcome"))
            out.append(f"entry {i}: {status}" + (f" ({diag})" if diag else ""))
    return out


def wait_for_server(fhir_server: str, seconds: float, *, token: str | None = None, out: TextIO | None = None,
                    client: httpx.Client | None = None, interval: float = 3.0) -> None:
    """Poll `{base}/metadata` until the server answers with a CapabilityStatement (HAPI takes a minute or two
    to start); CommandError after `seconds`."""
    out = out or sys.stdout
    url = f"{fhir_server.rstrip('/')}/metadata"
    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(30.0, connect=5.0), follow_redirects=False)
    started = time.monotonic()
    last = "no answer yet"
    try:
        while True:
            try:
                resp = http.get(url, headers=_fhir_headers(token))
                if resp.is_success and resp.json().get("resourceType") == "CapabilityStatement":
                    print(f"FHIR server ready after {time.monotonic() - started:.0f} s", file=out, flush=True)
                    return
                last = f"HTTP {resp.status_code}"
            except (httpx.HTTPError, ValueError, AttributeError) as exc:
                last = type(exc).__name__
            elapsed = time.monotonic() - started
            if elapsed >= seconds:
                raise CommandError(f"the FHIR server at {url} was not ready after {seconds:g} s ({last})")
            print(f"waiting for the FHIR server ({last}, {elapsed:.0f} s) ...", file=out, flush=True)
            time.sleep(min(interval, max(0.0, seconds - elapsed)))
    finally:
        if own:
            http.close()


def load_samples(fhir_server: str, *, token: str | None = None, sample_ids: Sequence[str] | None = None,
                 now: datetime | None = None, out: TextIO | None = None,
                 client: httpx.Client | None = None) -> list[Loaded]:
    """POST each sample's transaction Bundle (dates shifted to `now`) to the server base; CommandError on the
    first failure."""
    from app.samples import list_samples, sample_bundle

    now = now or datetime.now(UTC)
    out = out or sys.stdout
    known = [s["id"] for s in list_samples()]
    ids = list(sample_ids) if sample_ids else known
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise CommandError(f"unknown sample id(s) {', '.join(unknown)}; known: {', '.join(known)}", code=2)
    base = fhir_server.rstrip("/")
    headers = {**_fhir_headers(token), "Content-Type": FHIR_JSON}
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
                raise CommandError(f"{sid}: cannot reach {base}: {type(exc).__name__}: {exc}") from None
            seconds = time.perf_counter() - t0
            if not resp.is_success:
                print("failed", file=out, flush=True)
                raise CommandError(f"{sid}: {_error_text(resp)}")
            try:
                doc = resp.json()
            except ValueError:
                doc = None
            failed = _failed_entries(doc)
            if failed:
                print("failed", file=out, flush=True)
                raise CommandError(f"{sid}: the server refused " + "; ".join(failed[:5]))
            local_pid = patient_id_of(bundle_resources(bundle))
            pid = _patient_id_from_response(bundle, doc) or local_pid
            print(f"ok in {seconds:.1f} s, Patient/{pid}", file=out, flush=True)
            results.append(Loaded(sid, pid, entries, seconds))
    finally:
        if own:
            http.close()
    return results


def cmd_load(args: argparse.Namespace) -> int:
    try:
        if args.wait:
            wait_for_server(args.fhir_server, args.wait, token=args.token)
        results = load_samples(args.fhir_server, token=args.token, sample_ids=args.sample)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    print(f"\nloaded {len(results)} patient(s) into {args.fhir_server.rstrip('/')}. Fire the hook for one "
          "(BASE: where your mbc-cds listens, as `mbc-cds serve` or `mbc-cds demo` printed it):")
    if results:
        print(f"  mbc-cds hook --service BASE/cds-services/mbc-palliative-care "
              f"--fhir-server {args.fhir_server.rstrip('/')} --patient {results[0].patient_id}")
    return 0


# ----------------------------------------------------------------------------------------------------------
# hook
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JwtSigner:
    """Signs CDS Hooks JWTs the way an EHR does: iss, aud (the exact URL called), exp +5 min, iat, jti, kid."""

    key_pem: bytes
    iss: str
    kid: str
    algorithm: str

    @classmethod
    def from_file(cls, path: str, iss: str, kid: str) -> JwtSigner:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            pem = Path(path).read_bytes()
            key = load_pem_private_key(pem, password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise CommandError(f"cannot read the JWT private key {path!r}: {exc}", code=2) from None
        if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
            alg = "ES384"
        elif isinstance(key, rsa.RSAPrivateKey):
            alg = "RS384"
        else:
            raise CommandError("the JWT key must be an EC P-384 (ES384) or RSA (RS384) private key in PEM",
                               code=2)
        return cls(pem, iss, kid, alg)

    def token(self, audience: str, now: float | None = None) -> str:
        import jwt

        iat = int(now if now is not None else time.time())
        claims = {"iss": self.iss, "aud": audience, "exp": iat + 300, "iat": iat, "jti": str(uuid.uuid4())}
        return jwt.encode(claims, self.key_pem, algorithm=self.algorithm, headers={"kid": self.kid, "typ": "JWT"})


def _discovery_url(service_url: str) -> tuple[str, str]:
    parts = urlsplit(service_url.rstrip("/"))
    head, _, service_id = parts.path.rpartition("/")
    if not service_id or not head.endswith("/cds-services"):
        raise CommandError(f"--service must be the service URL, e.g. http://host/cds-services/<id>, "
                           f"not {service_url!r}", code=2)
    return urlunsplit((parts.scheme, parts.netloc, head, "", "")), service_id


def _service_headers(signer: JwtSigner | None, url: str) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if signer is not None:
        headers["Authorization"] = f"Bearer {signer.token(url)}"
    return headers


def _next_url(base: str, link: str) -> str:
    """A next link, absolute or relative; one to another origin (a proxy's inside name, say) is re-based onto
    the FHIR server's origin, so that the token goes nowhere else (as cds_hooks.fallback does)."""
    b = urlsplit(base)
    if "://" in link:
        n = urlsplit(link)
        return urlunsplit((b.scheme, b.netloc, n.path, n.query, ""))
    if link.startswith("/"):
        return urlunsplit((b.scheme, b.netloc, "", "", "")) + link
    if link.startswith("?"):
        return base + link
    return f"{base}/{link}"


def read_fhir(http: httpx.Client, base: str, relative: str, token: str | None) -> dict[str, Any]:
    """GET `{base}/{relative}`; a searchset comes back as one Bundle with the entries of every page."""
    url = f"{base}/{relative.lstrip('/')}"
    headers = _fhir_headers(token)
    entries: list[Any] = []
    first: dict[str, Any] | None = None
    seen = {url}
    for _page in range(MAX_PAGES):
        resp = http.get(encode_request_url(url), headers=headers)
        if not resp.is_success:
            raise CommandError(f"GET {relative}: {_error_text(resp)}")
        doc = resp.json()
        if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
            raise CommandError(f"GET {relative}: not a FHIR resource")
        if doc["resourceType"] == "OperationOutcome":
            raise CommandError(f"GET {relative}: {_diagnostics(doc)}")
        if doc["resourceType"] != "Bundle":
            return doc
        first = first or doc
        entries.extend(doc.get("entry") or [])
        nxt = next((lk.get("url") for lk in doc.get("link") or []
                    if isinstance(lk, dict) and lk.get("relation") == "next" and lk.get("url")), None)
        if not nxt:
            break
        url = _next_url(base, nxt)
        if url in seen:
            break
        seen.add(url)
    assert first is not None
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
    if isinstance(first.get("total"), int):
        bundle["total"] = first["total"]
    return bundle


def build_prefetch(http: httpx.Client, discovery: Mapping[str, Any], service_id: str, request: dict[str, Any],
                   fhir_server: str, token: str | None, log: Callable[[str], None]) -> dict[str, Any]:
    """Render the service's prefetch templates and read them from the FHIR server, as an EHR would."""
    from cds_hooks.models import HookRequest
    from cds_hooks.prefetch import TemplateError, render_template

    service = next((s for s in discovery.get("services") or [] if s.get("id") == service_id), None)
    if service is None:
        raise CommandError(f"the discovery document does not list the service {service_id!r}")
    hook = HookRequest.model_validate(request)
    prefetch: dict[str, Any] = {}
    base = fhir_server.rstrip("/")
    for key, template in (service.get("prefetch") or {}).items():
        try:
            rendered = render_template(template, hook)
        except TemplateError as exc:
            log(f"  prefetch {key}: not rendered ({exc}); the service will read it itself")
            continue
        try:
            value = read_fhir(http, base, rendered, token)
        except (CommandError, httpx.HTTPError, ValueError) as exc:
            log(f"  prefetch {key}: {exc}; left out, the service will read it itself")
            continue
        count = len(value.get("entry") or []) if value.get("resourceType") == "Bundle" else 1
        log(f"  prefetch {key}: {count} resource(s)")
        prefetch[key] = value
    return prefetch


def fire_hook(service_url: str, fhir_server: str, patient_id: str, *, prefetch: bool = False,
              token: str | None = None, signer: JwtSigner | None = None, user: str = DEFAULT_USER,
              client: httpx.Client | None = None, log: Callable[[str], None] | None = None,
              hook: str = "patient-view", draft_orders: dict[str, Any] | None = None,
              selections: list[str] | None = None) -> httpx.Response:
    """POST a hook (patient-view, or order-select / order-sign with draft orders) to `service_url`; returns the
    service's response (any status)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    service_url = service_url.rstrip("/")
    discovery_url, service_id = _discovery_url(service_url)
    body = patient_view_request(patient_id, fhir_server=fhir_server.rstrip("/"), token=token, user=user,
                                hook=hook, draft_orders=draft_orders, selections=selections)
    own = client is None
    http = client or httpx.Client(timeout=READ_TIMEOUT, follow_redirects=False)
    try:
        if prefetch:
            log(f"GET {discovery_url}")
            resp = http.get(discovery_url, headers=_service_headers(signer, discovery_url))
            if not resp.is_success:
                return resp
            log(f"reading the prefetch templates from {fhir_server.rstrip('/')}")
            body["prefetch"] = build_prefetch(http, resp.json(), service_id, body, fhir_server, token, log)
        log(f"POST {service_url} ({hook}, patient {patient_id}"
            f"{', with prefetch' if prefetch else ', fhirServer only'})")
        return http.post(service_url, content=orjson.dumps(body),
                         headers={**_service_headers(signer, service_url), "Content-Type": "application/json"},
                         timeout=httpx.Timeout(60.0, connect=10.0))
    finally:
        if own:
            http.close()


def read_draft_orders(path: str) -> dict[str, Any]:
    """A draftOrders Bundle from a JSON file holding a Bundle or a single order resource."""
    try:
        data = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise CommandError(f"cannot read draft orders from {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise CommandError(f"{path} is not a FHIR resource")
    if data["resourceType"] == "Bundle":
        return data
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": data}]}


def cmd_hook(args: argparse.Namespace) -> int:
    from app.cli import render_cards_table

    jwt_opts = (args.jwt_key, args.jwt_iss, args.jwt_kid)
    signer = None
    try:
        if any(jwt_opts):
            if not all(jwt_opts):
                raise CommandError("--jwt-key, --jwt-iss and --jwt-kid go together", code=2)
            signer = JwtSigner.from_file(args.jwt_key, args.jwt_iss, args.jwt_kid)
        t0 = time.perf_counter()
        drafts = read_draft_orders(args.draft) if args.draft else None
        if args.hook in ORDER_HOOKS and drafts is None:
            raise CommandError(f"--hook {args.hook} needs --draft FILE (a Bundle of draft orders or one resource)")
        resp = fire_hook(args.service, args.fhir_server, args.patient, prefetch=args.prefetch, token=args.token,
                         signer=signer, user=args.user, hook=args.hook, draft_orders=drafts,
                         selections=args.select)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except httpx.HTTPError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    try:
        data = resp.json()
    except ValueError:
        data = None
    if not resp.is_success or not isinstance(data, dict) or not isinstance(data.get("cards"), list):
        print(f"error: the service answered HTTP {resp.status_code}", file=sys.stderr)
        if data is not None:
            sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            print(resp.text[:2000])
        return 1
    print(f"HTTP {resp.status_code} in {(time.perf_counter() - t0) * 1000:.0f} ms: {len(data['cards'])} card(s)",
          file=sys.stderr)
    if args.json:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render_cards_table(data["cards"]))
    return 0


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


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("load", help="POST the sample patients (transaction Bundles) to a FHIR server",
                              description="POST each sample patient as a transaction Bundle, dates shifted to "
                                          "now, to the FHIR server base (HAPI FHIR, Medplum, ...).")
    p.add_argument("--fhir-server", required=True, help="FHIR base URL, e.g. https://hapi.fhir.org/baseR4")
    p.add_argument("--token", help="bearer token for the FHIR server")
    p.add_argument("--sample", action="extend", nargs="+", metavar="ID",
                   help="only these sample ids (default: all; see GET /demo/samples)")
    p.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                   help="first wait up to SECONDS for the server's /metadata (a starting HAPI takes a minute)")
    p.set_defaults(func=cmd_load)

    p = subparsers.add_parser("hook", help="fire a hook (patient-view, order-select, order-sign) at a CDS service",
                              description="Fire patient-view (or order-select / order-sign with --draft) with "
                                          "fhirServer (and fhirAuthorization with --token); with --prefetch, read "
                                          "the discovery prefetch templates from the FHIR server first and send "
                                          "them. Prints the cards.")
    p.add_argument("--service", required=True,
                   help="service URL, e.g. http://127.0.0.1:8080/cds-services/mbc-palliative-care")
    p.add_argument("--fhir-server", required=True, help="FHIR base URL the service (or this tool) reads")
    p.add_argument("--patient", required=True, help="patient id on the FHIR server")
    p.add_argument("--hook", choices=("patient-view", *ORDER_HOOKS), default="patient-view",
                   help="the hook to fire (default patient-view; order hooks need --draft)")
    p.add_argument("--draft", metavar="FILE",
                   help="draft orders for order-select / order-sign: a FHIR Bundle, or one MedicationRequest / "
                        "ServiceRequest, as JSON")
    p.add_argument("--select", action="extend", nargs="+", metavar="REF",
                   help="order-select: the selected drafts, e.g. MedicationRequest/request-123 (default: all)")
    p.add_argument("--prefetch", action="store_true", help="send the prefetch, read here from the FHIR server")
    p.add_argument("--token", help="FHIR bearer token, sent as fhirAuthorization")
    p.add_argument("--user", default=DEFAULT_USER, help=f"context.userId (default {DEFAULT_USER})")
    p.add_argument("--jwt-key", metavar="PEM", help="private key (EC P-384 or RSA) to sign a CDS Hooks JWT")
    p.add_argument("--jwt-iss", metavar="ISS", help="JWT issuer (the service's trusted client iss)")
    p.add_argument("--jwt-kid", metavar="KID", help="JWT key id (kid header)")
    p.add_argument("--json", action="store_true", help="print the response JSON instead of a table")
    p.set_defaults(func=cmd_hook)
