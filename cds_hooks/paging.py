"""Reading a FHIR search page by page, the same way wherever it is read: the async prefetch resolver
(`cds_hooks.fallback`) and the synchronous `read_all_pages` below (`mbc-cds hook --prefetch`).

`Bundle.link[relation=next]` is resolved against the server base; a link to another origin (a proxy's inside
name, say) is re-based onto the base's origin, so that the bearer token goes nowhere else; a link that then
leads outside the base (or that the caller's URL check refuses) is not followed. A page seen before is a loop;
the page cap counts every page read. Also here: the words of an OperationOutcome, in the two lengths callers
show them (the first issue in a log or a card, every issue on a command line).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

from cds_hooks.urlpolicy import UrlRefused, normalise
from cds_hooks.urls import encode_request_url

__all__ = [
    "FHIR_JSON", "FhirReadError", "PageWalk", "PagingStop", "all_diagnostics", "error_text", "fhir_headers",
    "first_diagnostics", "link_of", "next_link", "read_all_pages", "resolve_link", "under_base",
]

FHIR_JSON = "application/fhir+json"
_DIAG_MAX = 200

StopKind = Literal["paging-loop", "too-many-pages", "refused-url"]


def fhir_headers(token: str | None) -> dict[str, str]:
    headers = {"Accept": FHIR_JSON}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


# ----------------------------------------------------------------------------------------------------------
# links
# ----------------------------------------------------------------------------------------------------------


def link_of(bundle: Mapping[str, Any], relation: str) -> str | None:
    links = bundle.get("link")
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, dict) and link.get("relation") == relation:
            url = link.get("url")
            if isinstance(url, str) and url.strip():
                return url.strip()
    return None


def next_link(bundle: Mapping[str, Any]) -> str | None:
    return link_of(bundle, "next")


def resolve_link(base: str, link: str) -> str:
    """A link, absolute or relative to the server base. An absolute link to another origin is re-based onto the
    base's origin so that the bearer token never leaves it."""
    b = urlsplit(base)
    if "://" in link:
        n = urlsplit(link)
        if (n.scheme.lower(), n.netloc.lower()) != (b.scheme.lower(), b.netloc.lower()):
            return urlunsplit((b.scheme, b.netloc, n.path, n.query, ""))
        return urlunsplit((n.scheme, n.netloc, n.path, n.query, ""))
    if link.startswith("?"):
        return base + link
    if link.startswith("/"):
        return urlunsplit((b.scheme, b.netloc, "", "", "")) + link
    return f"{base}/{link}"


def under_base(base: str, url: str) -> bool:
    """`url` is the base itself or below it, compared after normalisation (no `/../` or `%2e%2e` way out)."""
    try:
        return normalise(url).under(normalise(base))
    except UrlRefused:
        return False


class PagingStop(Exception):
    """Why a search stops before its last page; what was read so far stays read."""

    def __init__(self, kind: StopKind, detail: str) -> None:
        super().__init__(detail)
        self.kind: StopKind = kind
        self.detail = detail


@dataclass(slots=True)
class PageWalk:
    """One search's way through its pages. `admit` every URL before it is read (the first and each `next`),
    count `pages` as each page is read successfully."""

    base: str
    max_pages: int
    url_allowed: Callable[[str], bool] | None = None
    pages: int = 0
    seen: set[str] = field(default_factory=set)

    def admit(self, url: str) -> str:
        if url in self.seen:
            raise PagingStop("paging-loop", f"next link repeats after {self.pages} page(s)")
        if self.pages >= self.max_pages:
            raise PagingStop("too-many-pages", f"stopped after {self.pages} page(s)")
        if not under_base(self.base, url):
            raise PagingStop("refused-url", f"link outside the FHIR server base after {self.pages} page(s)")
        if self.url_allowed is not None and not self.url_allowed(url):
            raise PagingStop("refused-url", f"link outside the allowed FHIR server after {self.pages} page(s)")
        self.seen.add(url)
        return url

    def next_url(self, page: Mapping[str, Any]) -> str | None:
        """The admitted URL of the page's `next` link; None on the last page."""
        link = next_link(page)
        return None if link is None else self.admit(resolve_link(self.base, link))


# ----------------------------------------------------------------------------------------------------------
# OperationOutcome
# ----------------------------------------------------------------------------------------------------------


def _issue_text(issue: Mapping[str, Any]) -> str:
    """An issue's diagnostics, else its details.text, else its code; whitespace collapsed (no newlines in logs)."""
    details = issue.get("details")
    for text in (issue.get("diagnostics"), details.get("text") if isinstance(details, dict) else None,
                 issue.get("code")):
        if isinstance(text, str) and text.strip():
            return " ".join(text.split())
    return ""


def first_diagnostics(outcome: Mapping[str, Any]) -> str:
    """The first issue's words, at most 200 characters: what a log line or a card may carry."""
    issues = outcome.get("issue")
    if not isinstance(issues, list) or not issues or not isinstance(issues[0], dict):
        return ""
    return _issue_text(issues[0])[:_DIAG_MAX]


def all_diagnostics(doc: Any) -> str:
    """Every issue as `severity: words`, joined; "" when `doc` is no OperationOutcome."""
    if not isinstance(doc, dict) or doc.get("resourceType") != "OperationOutcome":
        return ""
    texts = []
    for issue in doc.get("issue") or []:
        if isinstance(issue, dict) and (text := _issue_text(issue)):
            texts.append(f"{issue.get('severity', 'error')}: {text}")
    return "; ".join(texts)


def error_text(resp: httpx.Response) -> str:
    """A failed response in one line: the status and the server's own words (its OperationOutcome, else the
    start of its body)."""
    try:
        doc = resp.json()
    except ValueError:
        doc = None
    diag = all_diagnostics(doc)
    if diag:
        return f"HTTP {resp.status_code}: {diag}"
    body = resp.text.strip().replace("\n", " ")
    return f"HTTP {resp.status_code}: {body[:300]}" if body else f"HTTP {resp.status_code}"


# ----------------------------------------------------------------------------------------------------------
# synchronous reader
# ----------------------------------------------------------------------------------------------------------


class FhirReadError(Exception):
    """A read that gave no usable answer; the message is the server's words or what was wrong."""


def read_all_pages(http: httpx.Client, base: str, relative: str, token: str | None, *,
                   max_pages: int = 50) -> dict[str, Any]:
    """GET `{base}/{relative}`; a searchset comes back as one Bundle with the entries of every page (and the
    first page's `total` when it has one). FhirReadError when a page fails or paging has to stop."""
    walk = PageWalk(base, max_pages)
    entries: list[Any] = []
    first: dict[str, Any] | None = None
    try:
        url: str | None = walk.admit(f"{base}/{relative.lstrip('/')}")
        while url is not None:
            resp = http.get(encode_request_url(url), headers=fhir_headers(token))
            if not resp.is_success:
                raise FhirReadError(error_text(resp))
            doc = resp.json()
            if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
                raise FhirReadError("not a FHIR resource")
            if doc["resourceType"] == "OperationOutcome":
                raise FhirReadError(all_diagnostics(doc))
            walk.pages += 1
            if doc["resourceType"] != "Bundle":
                return doc
            first = first or doc
            entries.extend(doc.get("entry") or [])
            url = walk.next_url(doc)
    except PagingStop as stop:
        raise FhirReadError(stop.detail) from None
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(entries),
                              "entry": entries}
    if first is not None and isinstance(first.get("total"), int):
        bundle["total"] = first["total"]
    return bundle
