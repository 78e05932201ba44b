"""Prefetch resolution: use what the CDS Client sent, read the rest from its FHIR server.

Per prefetch key (CDS Hooks 2.0 "Providing FHIR Resources to a CDS Service"):
- value present: use it (a Bundle gives its entries' resources, any other resource gives [resource]);
  a Bundle with a `next` link is a first page (the CDS Hooks Sandbox sends exactly that): the rest is read
  from the FHIR server under the same rules as our own searches (same origin, page cap counting the sent
  page, loop detection, the one deadline); without a FHIR server the key is an `incomplete` problem;
  an OperationOutcome (an error at the client) or a non-resource value is unreadable: problem, and read the
  key from the FHIR server when there is one;
- value null: the client has no data; nothing is fetched;
- key absent: GET `{fhirServer}/{rendered template}` (bearer token when given), following
  `Bundle.link[relation=next]`; without a FHIR server the key is a `missing` problem.

Every fetch runs in parallel under one overall deadline; a slow or faulty server yields problems, never an
exception.  Logs carry prefetch keys, counts, problem kinds and HTTP statuses only: no URLs (they hold
patient ids), no resource content, never the token.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import orjson

from cds_hooks.models import HookRequest
from cds_hooks.outbound import OriginLimiter
from cds_hooks.paging import (
    PageWalk,
    PagingStop,
    fhir_headers,
    first_diagnostics,
    link_of,
    next_link,
    resolve_link,
)
from cds_hooks.prefetch import TemplateError, render_template
from cds_hooks.urls import encode_request_url

__all__ = [
    "FetchProblem", "PrefetchResolver", "PrefetchResult", "ProblemKind", "resources_of", "split_resources",
    "transport_cause",
]

log = logging.getLogger(__name__)

ProblemKind = Literal[
    "http", "timeout", "malformed", "operation-outcome", "paging-loop", "too-many-pages", "missing",
    "incomplete", "refused-url", "too-many-resources",
]
KeySource = Literal["prefetch", "null", "server", "unavailable"]

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
_ERROR_BODY_MAX = 64 * 1024


@dataclass(frozen=True, slots=True)
class FetchProblem:
    """Why (part of) one prefetch key could not be read.  `detail` never holds resource content; for an
    OperationOutcome it carries the first issue's diagnostics (at most 200 characters)."""

    key: str
    kind: ProblemKind
    status: int | None = None
    detail: str = ""
    # kind 'http' without a status (no HTTP answer at all): 'dns' | 'refused' | 'tls' | 'network'
    cause: str = ""


@dataclass(slots=True)
class PrefetchResult:
    resources: dict[str, list[dict[str, Any]]]
    problems: list[FetchProblem]
    had_any_data: bool
    # per key: where its resources came from ('unavailable' = nothing usable; see problems)
    sources: dict[str, KeySource] = field(default_factory=dict)
    # problems with the prefetch value of a key that was then read in full from the FHIR server
    recovered: list[FetchProblem] = field(default_factory=list)
    pages_fetched: int = 0
    elapsed_ms: float = 0.0
    # per key: Bundle entries that held no resource object (a string, a number, a list, no `resource`);
    # they are skipped, and the count lets the caller say so
    skipped: dict[str, int] = field(default_factory=dict)

    def unreadable_keys(self) -> set[str]:
        """Keys whose data is missing or incomplete (each has at least one problem)."""
        return {p.key for p in self.problems}

    def all_resources(self, *, dedupe: bool = True) -> list[dict[str, Any]]:
        """All resources of all keys; with `dedupe`, a resource met twice (same resourceType/id) once."""
        out: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        for items in self.resources.values():
            for r in items:
                if dedupe:
                    rid = r.get("id")
                    rtype = r.get("resourceType")
                    if isinstance(rid, str) and isinstance(rtype, str):
                        if (rtype, rid) in seen:
                            continue
                        seen.add((rtype, rid))
                out.append(r)
        return out

    def counts(self) -> dict[str, int]:
        """Numbers only, safe to log."""
        src = list(self.sources.values())
        return {
            "keys": len(self.sources),
            "from_prefetch": src.count("prefetch"),
            "null": src.count("null"),
            "from_server": src.count("server"),
            "unavailable": src.count("unavailable"),
            "pages": self.pages_fetched,
            "resources": sum(len(v) for v in self.resources.values()),
            "problems": len(self.problems),
            "skipped_entries": sum(self.skipped.values()),
        }

    def log_summary(self) -> dict[str, Any]:
        """Counts plus (key, kind, status) of each problem: no URLs, no details, no patient data."""
        return {
            **self.counts(),
            "elapsed_ms": round(self.elapsed_ms, 1),
            "had_any_data": self.had_any_data,
            "problem_list": [{"key": p.key, "kind": p.kind, "status": p.status, "cause": p.cause}
                             for p in self.problems],
            "recovered": [{"key": p.key, "kind": p.kind} for p in self.recovered],
        }


# ----------------------------------------------------------------------------------------------------------
# helpers on FHIR JSON (generic, no resource semantics)
# ----------------------------------------------------------------------------------------------------------


def resources_of(value: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A Bundle's entry resources (search.mode 'outcome' entries left out), or [value] for a resource.
    Entries without a resource object are left out; `split_resources` also counts them."""
    return split_resources(value)[0]


def split_resources(value: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """(resources, skipped): as `resources_of`, plus the number of entries that were skipped because the
    entry or its `resource` is not a JSON object (or `entry` itself is not a list)."""
    if value.get("resourceType") != "Bundle":
        return [value if isinstance(value, dict) else dict(value)], 0
    out: list[dict[str, Any]] = []
    entries = value.get("entry")
    if entries is None:
        return out, 0
    if not isinstance(entries, list):
        return out, 1
    skipped = 0
    for entry in entries:
        if not isinstance(entry, dict):
            skipped += 1
            continue
        search = entry.get("search")
        if isinstance(search, dict) and search.get("mode") == "outcome":
            continue
        res = entry.get("resource")
        if not isinstance(res, dict):
            # a search entry without a resource (e.g. only fullUrl) is legal FHIR but gives nothing to read
            skipped += 1
            continue
        out.append(res)
    return out, skipped


class _Problem(Exception):
    def __init__(self, kind: ProblemKind, status: int | None = None, detail: str = "") -> None:
        super().__init__(kind)
        self.kind: ProblemKind = kind
        self.status = status
        self.detail = detail


@dataclass(slots=True)
class _HookBudget:
    """What one hook's fetches share: its connection slots and its resource count."""

    slots: asyncio.Semaphore | None
    resources: int = 0


@dataclass(slots=True)
class _KeyState:
    key: str
    # the key's pages: read so far, and the URLs already read (a sent first page's `self` link among them)
    walk: PageWalk
    resources: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    problem: FetchProblem | None = None
    budget: _HookBudget | None = None

    @property
    def pages(self) -> int:
        return self.walk.pages


@dataclass(slots=True)
class _FirstPage:
    """A prefetch Bundle that carries a `next` link: what it held, and where the rest is."""

    resources: list[dict[str, Any]]
    skipped: int
    next_link: str
    self_link: str | None


def _first_page(value: Mapping[str, Any]) -> _FirstPage | None:
    """The sent Bundle as a first page, or None when it is the whole answer (no `next` link)."""
    if value.get("resourceType") != "Bundle":
        return None
    link = next_link(value)
    if link is None:
        return None
    found, skipped = split_resources(value)
    return _FirstPage(found, skipped, link, link_of(value, "self"))


# ----------------------------------------------------------------------------------------------------------
# resolver
# ----------------------------------------------------------------------------------------------------------


class PrefetchResolver:
    """Fills a request's prefetch from its `fhirServer`.  One instance can serve many requests; the
    `httpx.AsyncClient` is owned (opened, closed, configured with per-request timeouts) by the caller."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        max_pages: int = 50,
        timeout_total: float = 8.0,
        page_size: int | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        limiter: OriginLimiter | None = None,
        per_hook: int | None = None,
        max_resources: int | None = None,
        url_allowed: Callable[[str], bool] | None = None,
    ) -> None:
        if max_pages < 1:
            raise ValueError("max_pages must be >= 1")
        if timeout_total <= 0:
            raise ValueError("timeout_total must be > 0")
        self._client = client
        self.max_pages = max_pages
        self.timeout_total = timeout_total
        self.page_size = page_size
        self.max_bytes = max_bytes
        self.limiter = limiter
        self.per_hook = per_hook
        self.max_resources = max_resources
        # Every URL read (first page and each `next` link) must pass it: paging stays under the allowed prefix.
        self.url_allowed = url_allowed

    async def resolve(self, request: HookRequest, templates: Mapping[str, str]) -> PrefetchResult:
        started = time.perf_counter()
        prefetch = request.prefetch or {}
        server = (request.fhirServer or "").rstrip("/") or None
        resources: dict[str, list[dict[str, Any]]] = {}
        sources: dict[str, KeySource] = {}
        problems: list[FetchProblem] = []
        to_fetch: dict[str, str] = {}
        first_pages: dict[str, _FirstPage] = {}
        skipped: dict[str, int] = {}
        had_value = False

        for key, template in templates.items():
            resources[key] = []
            sources[key] = "unavailable"
            fetch = False
            if key in prefetch:
                value = prefetch[key]
                if value is None:
                    sources[key] = "null"
                    had_value = True
                elif isinstance(value, dict) and value.get("resourceType") == "OperationOutcome":
                    detail = "prefetch value is an OperationOutcome"
                    diag = first_diagnostics(value)
                    problems.append(
                        FetchProblem(key, "operation-outcome", None, f"{detail}: {diag}" if diag else detail)
                    )
                    fetch = True
                elif isinstance(value, dict) and isinstance(value.get("resourceType"), str):
                    resources[key], n_skipped = split_resources(value)
                    if n_skipped:
                        skipped[key] = n_skipped
                    sources[key] = "prefetch"
                    had_value = True
                    page = _first_page(value)
                    if page is not None and server:
                        first_pages[key] = page
                    elif page is not None:
                        problems.append(FetchProblem(
                            key, "incomplete", None, "prefetch Bundle is a first page; no fhirServer for the rest"))
                else:
                    problems.append(
                        FetchProblem(key, "malformed", None, "prefetch value is not a FHIR resource")
                    )
                    fetch = True
            elif server:
                fetch = True
            else:
                problems.append(FetchProblem(key, "missing", None, "not in prefetch and no fhirServer"))

            if fetch and server:
                try:
                    to_fetch[key] = render_template(template, request)
                except TemplateError as exc:
                    problems.append(FetchProblem(key, "missing", None, str(exc)))

        pages = 0
        fetched_ok = False
        recovered: list[FetchProblem] = []
        if (to_fetch or first_pages) and server:
            states = await self._fetch_all(server, request.access_token(), to_fetch, first_pages)
            for key, st in states.items():
                if key in first_pages:
                    # the sent page stays; the server's pages complete it (or the key is incomplete)
                    pages += max(st.pages - 1, 0)
                    resources[key] = st.resources
                    if st.skipped:
                        skipped[key] = st.skipped
                    if st.problem is not None:
                        problems.append(st.problem)
                    continue
                pages += st.pages
                if st.pages:
                    fetched_ok = True
                if st.resources or (st.pages and st.problem is None):
                    resources[key] = st.resources
                    sources[key] = "server"
                    if st.skipped:
                        skipped[key] = st.skipped
                if st.problem is not None:
                    problems.append(st.problem)
                elif st.pages:
                    # the server gave the whole answer: an earlier prefetch problem is history
                    recovered.extend(p for p in problems if p.key == key)
                    problems = [p for p in problems if p.key != key]

        result = PrefetchResult(
            resources=resources,
            problems=problems,
            had_any_data=(had_value or fetched_ok) if templates else True,
            sources=sources,
            recovered=recovered,
            pages_fetched=pages,
            elapsed_ms=(time.perf_counter() - started) * 1000,
            skipped=skipped,
        )
        if problems or recovered:
            log.warning("prefetch problems %s", result.log_summary())
        else:
            log.debug("prefetch resolved %s", result.counts())
        return result

    # -- fetching -----------------------------------------------------------------------------------------

    async def _fetch_all(self, base: str, token: str | None, urls: dict[str, str],
                         first_pages: Mapping[str, _FirstPage] | None = None) -> dict[str, _KeyState]:
        headers = fhir_headers(token)
        budget = _HookBudget(asyncio.Semaphore(self.per_hook) if self.per_hook else None)
        states = {key: _KeyState(key, self._walk(base), budget=budget) for key in urls}
        starts = {key: self._first_url(base, rel) for key, rel in urls.items()}
        for key, page in (first_pages or {}).items():
            states[key], starts[key] = self._continuation(key, base, page)
            states[key].budget = budget  # the sent page is prefetch (capped as such); the rest counts here
        tasks = {
            asyncio.create_task(self._run_key(states[key], base, url, headers)): key for key, url in starts.items()
        }
        _done, pending = await asyncio.wait(tasks, timeout=self.timeout_total)
        if pending:
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for t in pending:
                st = states[tasks[t]]
                st.problem = FetchProblem(
                    st.key,
                    "timeout",
                    None,
                    f"overall deadline of {self.timeout_total:g} s reached after {st.pages} page(s)",
                )
        return states

    def _walk(self, base: str) -> PageWalk:
        return PageWalk(base, self.max_pages, self.url_allowed)

    def _continuation(self, key: str, base: str, page: _FirstPage) -> tuple[_KeyState, str]:
        """State and first URL for reading the rest of a sent first page: the sent page counts as page 1
        (against the page cap) and its `self` link as already seen (loop detection)."""
        walk = self._walk(base)
        walk.pages = 1
        if page.self_link:
            walk.seen.add(resolve_link(base, page.self_link))
        return _KeyState(key, walk, resources=list(page.resources), skipped=page.skipped), \
            resolve_link(base, page.next_link)

    def _first_url(self, base: str, rendered: str) -> str:
        rel = rendered.lstrip("/")
        if self.page_size and "?" in rel and "_count=" not in rel:
            rel = f"{rel}&_count={self.page_size}"
        return f"{base}/{rel}"

    async def _run_key(self, st: _KeyState, base: str, url: str, headers: dict[str, str]) -> None:
        try:
            async with _limited(st.budget.slots if st.budget else None, self.limiter, base):
                await self._fetch_pages(st, url, headers)
        except _Problem as p:
            st.problem = FetchProblem(st.key, p.kind, p.status, p.detail)
        except PagingStop as stop:
            st.problem = FetchProblem(st.key, stop.kind, None, stop.detail)
        except httpx.TimeoutException as exc:
            st.problem = FetchProblem(st.key, "timeout", None, type(exc).__name__)
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            st.problem = FetchProblem(st.key, "http", None, f"request failed: {type(exc).__name__}",
                                      cause=transport_cause(exc))
        except Exception as exc:  # never let a server fault (or a surprise in its data) escape
            log.warning("prefetch key %s: unexpected %s", st.key, type(exc).__name__)
            st.problem = FetchProblem(st.key, "malformed", None, f"unexpected error: {type(exc).__name__}")

    async def _fetch_pages(self, st: _KeyState, url: str, headers: dict[str, str]) -> None:
        walk = st.walk
        nxt: str | None = walk.admit(url)
        while nxt is not None:
            page = await self._get_json(nxt, headers)
            rtype = page.get("resourceType")
            if rtype == "OperationOutcome":
                raise _Problem("operation-outcome", None, first_diagnostics(page))
            if not isinstance(rtype, str) or not rtype:
                raise _Problem("malformed", None, "response is not a FHIR resource")
            walk.pages += 1  # pages read successfully
            if rtype != "Bundle":
                st.resources.append(page)
                return
            found, n_skipped = split_resources(page)
            self._take(st, found)
            st.skipped += n_skipped
            nxt = walk.next_url(page)

    def _take(self, st: _KeyState, found: list[dict[str, Any]]) -> None:
        """Keep a page's resources, up to the hook's resource cap over all keys together."""
        if self.max_resources is not None and st.budget is not None:
            room = self.max_resources - st.budget.resources
            if len(found) > room:
                st.resources.extend(found[:max(room, 0)])
                st.budget.resources = self.max_resources
                raise _Problem("too-many-resources", None, f"stopped at {self.max_resources} resources")
            st.budget.resources += len(found)
        st.resources.extend(found)

    async def _get_json(self, url: str, headers: dict[str, str]) -> dict[str, Any]:
        async with self._client.stream("GET", encode_request_url(url), headers=headers) as resp:
            status = resp.status_code
            ok = 200 <= status < 300
            limit = self.max_bytes if ok else _ERROR_BODY_MAX
            body, too_big = await _read_bounded(resp, limit)
        if not ok:
            detail = f"HTTP {status}"
            if not too_big:
                try:
                    doc = orjson.loads(body) if body else None
                except orjson.JSONDecodeError:
                    doc = None
                if isinstance(doc, dict) and doc.get("resourceType") == "OperationOutcome":
                    diag = first_diagnostics(doc)
                    if diag:
                        detail = f"{detail}: {diag}"
            raise _Problem("http", status, detail)
        if too_big:
            raise _Problem("malformed", status, f"response larger than {limit} bytes")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise _Problem("malformed", status, "response is not valid JSON") from None
        if not isinstance(doc, dict):
            raise _Problem("malformed", status, "response is not a JSON object")
        return doc


@asynccontextmanager
async def _limited(hook_slots: asyncio.Semaphore | None, limiter: OriginLimiter | None,
                   url: str) -> AsyncIterator[None]:
    """The hook's slot first, then the origin's: a hook waiting for its own slot holds no origin slot."""
    async with AsyncExitStack() as stack:
        if hook_slots is not None:
            await stack.enter_async_context(hook_slots)
        if limiter is not None:
            await stack.enter_async_context(limiter.slot(url))
        yield


_DNS_WORDS = ("name or service not known", "nodename nor servname", "temporary failure in name resolution",
              "getaddrinfo", "no address associated", "name resolution")


def transport_cause(exc: BaseException) -> str:
    """Why a request got no HTTP answer: 'dns', 'refused', 'tls' or 'network' (one card line per cause)."""
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in chain and len(chain) < 10:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for e in chain:
        if isinstance(e, socket.gaierror):
            return "dns"
        if isinstance(e, ConnectionRefusedError):
            return "refused"
        if isinstance(e, ssl.SSLError):
            return "tls"
    text = " ".join(str(e) for e in chain).lower()
    if any(w in text for w in _DNS_WORDS):
        return "dns"
    if "refused" in text:
        return "refused"
    if "ssl" in text or "certificate" in text:
        return "tls"
    return "network"


async def _read_bounded(resp: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """Read at most `limit` bytes of the body; (body, True) when the body is larger."""
    declared = resp.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return b"", True
    buf = bytearray()
    async for chunk in resp.aiter_bytes():
        buf += chunk
        if len(buf) > limit:
            return b"", True
    return bytes(buf), False
