"""A real threaded HTTP server on 127.0.0.1 that plays a faulty FHIR server (and a JWK Set host).

The base URL of a FHIR server in fault mode `m` is `{server.url}/{m}`; requests below it are answered from
`server.resources` (a dict resourceType -> list of resources). The fault applies only to the resource types in
`server.faulty_types`; every other type is served correctly, so a test can check that the cards the good data
supports still come back.

Modes:
  ok            every search answers a Bundle (no fault)
  trickle       200 with a large Content-Length, then one byte every `trickle_interval` seconds
  hang          reads the request and never answers (until the server stops)
  401 403 404 500  that status with an OperationOutcome
  malformed     200 with a body that is not JSON
  paging-loop   200 Bundles whose `next` link goes back and forth between two pages forever
  slow-headers  answers correctly after `slow_seconds`

`server.jwks` (a JWK Set dict) is served at `{server.url}/jwks.json`.
Every request is recorded in `server.requests` as (method, path, headers).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MODES = ("ok", "trickle", "hang", "401", "403", "404", "500", "malformed", "paging-loop", "slow-headers")


class FaultyFhirServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # a hook opens a dozen connections at once; the default backlog (5) drops some

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.resources: dict[str, list[dict[str, Any]]] = {}
        self.faulty_types: set[str] = {"Observation"}
        self.jwks: dict[str, Any] | None = None
        self.trickle_interval = 0.1
        self.slow_seconds = 5.0
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def base(self, mode: str) -> str:
        assert mode in MODES, mode
        return f"{self.url}/{mode}"

    def record(self, method: str, path: str, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append((method, path, headers))


class _Handler(BaseHTTPRequestHandler):
    server: FaultyFhirServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return

    # -- helpers ----------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str = "application/fhir+json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, doc: Any) -> None:
        self._send(status, json.dumps(doc).encode())

    def _outcome(self, status: int, text: str) -> None:
        self._json(status, {"resourceType": "OperationOutcome",
                            "issue": [{"severity": "error", "code": "processing", "diagnostics": text}]})

    def _bundle(self, resources: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
                                  "entry": [{"resource": r} for r in resources]}
        if next_url:
            bundle["link"] = [{"relation": "next", "url": next_url}]
        return bundle

    # -- routing ----------------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server API
        srv = self.server
        parts = urlsplit(self.path)
        srv.record("GET", self.path, {k.lower(): v for k, v in self.headers.items()})
        if parts.path == "/jwks.json":
            if srv.jwks is None:
                self._outcome(404, "no keys")
            else:
                self._send(200, json.dumps(srv.jwks).encode(), "application/jwk-set+json")
            return
        segments = [s for s in parts.path.split("/") if s]
        if len(segments) < 2 or segments[0] not in MODES:
            self._outcome(404, "unknown path")
            return
        mode, rtype = segments[0], segments[1]
        rest = segments[2:]
        query = parse_qs(parts.query)
        if rtype in srv.faulty_types and mode != "ok":
            self._fault(mode, rtype, query)
            return
        self._serve(rtype, rest)

    def _serve(self, rtype: str, rest: list[str]) -> None:
        items = self.server.resources.get(rtype, [])
        if rest:  # read: Patient/{id}
            found = next((r for r in items if r.get("id") == rest[0]), None)
            if found is None:
                self._outcome(404, "not found")
            else:
                self._json(200, found)
            return
        self._json(200, self._bundle(items))

    def _fault(self, mode: str, rtype: str, query: dict[str, list[str]]) -> None:
        srv = self.server
        if mode in ("401", "403", "404", "500"):
            self._outcome(int(mode), f"fault {mode} at {self.path}")  # echoes the patient id, as servers do
        elif mode == "malformed":
            self._send(200, b'{"resourceType": "Bundle", "entry": [ {"resource": ')
        elif mode == "hang":
            srv.stopping.wait(30)
        elif mode == "slow-headers":
            if not srv.stopping.wait(srv.slow_seconds):
                self._serve(rtype, [])
        elif mode == "trickle":
            body = json.dumps(self._bundle(srv.resources.get(rtype, []))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for i in range(len(body)):
                    if srv.stopping.wait(srv.trickle_interval):
                        return
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
            except OSError:  # the client gave up: that is the point
                return
        elif mode == "paging-loop":
            page = query.get("page", ["1"])[0]
            nxt = "2" if page == "1" else "1"
            self._json(200, self._bundle(srv.resources.get(rtype, []),
                                         f"{srv.base('paging-loop')}/{rtype}?page={nxt}"))
        else:
            self._outcome(500, "unknown mode")


@contextmanager
def running_server() -> Iterator[FaultyFhirServer]:
    server = FaultyFhirServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


if __name__ == "__main__":  # manual poking: python -m tests.slow_server
    with running_server() as s:
        print(f"serving on {s.url}; modes: {', '.join(MODES)}")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
