"""The routes' FastAPI dependencies (app/routes/dependencies.py) and the one error format (app/routes/errors.py).

Each route checks the caller's JWT, then the service named in its path, then its body, and never reads a body it
refuses; the body is read and parsed once; every pydantic error is formatted by one function; an unexpected
error is the request-id middleware's JSON 500, with no handler for bare `Exception` left to shadow it."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel, ValidationError

import app.routes.dependencies as dependencies
import app.routes.errors as errors
from app.main import create_app
from app.routes import discovery, feedback, health, knowledge, services, viewer
from app.routes.errors import validation_detail
from cds_hooks.models import FeedbackRequest, HookRequest
from tests.conftest import SERVICE_URL, hook_request, make_settings
from tests.test_security_jwt import BASE, ISS_INLINE, auth, jwt_settings, public_jwk, token

FEEDBACK_URL = f"{SERVICE_URL}/feedback"
REPORT_URL = f"{SERVICE_URL}/feedback/report"
PID = "pat-deps-1"
PATIENT = {"resourceType": "Patient", "id": PID, "gender": "female", "birthDate": "1961-04-02"}
# Over every body limit of the app below (hook: max_body_bytes, feedback: 1 MiB), and not JSON at all.
HUGE = b"x" * (3 * 1024 * 1024)


class BodyReadSpy:
    """ASGI wrapper counting the `http.request` messages the app receives: the body, as the app reads it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.body_reads = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counting_receive() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                self.body_reads += 1
            return message

        await self.app(scope, counting_receive if scope["type"] == "http" else receive, send)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[TestClient, BodyReadSpy]]:
    """JWT off (demo mode), a 2 MiB hook body limit: the feedback limit (1 MiB) is the tighter one."""
    spy = BodyReadSpy(create_app(make_settings(tmp_path, max_body_bytes=2 * 1024 * 1024)))
    with TestClient(spy) as client:
        yield client, spy


@pytest.fixture
def jwt_on(tmp_path: Path) -> Iterator[tuple[TestClient, BodyReadSpy, ec.EllipticCurvePrivateKey]]:
    key = ec.generate_private_key(ec.SECP384R1())
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps([{"iss": ISS_INLINE, "jwks": {"keys": [public_jwk(key, "inline-1")]}}]))
    spy = BodyReadSpy(create_app(jwt_settings(tmp_path, clients_file=str(clients))))
    with TestClient(spy) as client:
        yield client, spy, key


def valid_hook() -> dict[str, Any]:
    return hook_request([PATIENT], PID)


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"extension": [value]}
    return value


# ------------------------------------------------------------------------------------------ check order


@pytest.mark.parametrize("url", [SERVICE_URL, FEEDBACK_URL, "/cds-services/nope", "/cds-services/nope/feedback"])
@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_a_refused_caller_never_has_its_body_read(jwt_on: Any, url: str, content_type: str) -> None:
    """401 before 404 (unknown service), 415 (content type) and 413 (size), and the body stays unread."""
    client, spy, key = jwt_on
    for headers, reason in (({}, "missing-token"), (auth(token(key, f"{BASE}/elsewhere")), "bad-audience")):
        resp = client.post(url, content=HUGE, headers={**headers, "content-type": content_type})
        assert resp.status_code == 401 and resp.json()["reason"] == reason, resp.text
    assert spy.body_reads == 0


def test_every_jwt_route_refuses_before_it_answers(jwt_on: Any) -> None:
    client, _, key = jwt_on
    for url in ("/cds-services", REPORT_URL, "/cds-services/nope/feedback/report"):
        resp = client.get(url)
        assert resp.status_code == 401 and resp.json()["reason"] == "missing-token", (url, resp.text)
    # A verified caller passes: the dependency gives the route its client, the next check answers.
    assert client.get("/cds-services", headers=auth(token(key, f"{BASE}/cds-services"))).status_code == 200
    resp = client.post("/cds-services/nope", content=HUGE, headers={
        **auth(token(key, f"{BASE}/cds-services/nope")), "content-type": "text/plain"})
    assert resp.status_code == 404 and resp.json()["error"] == "unknown-service"


@pytest.mark.parametrize("url", ["/cds-services/nope", "/cds-services/nope/feedback"])
def test_an_unknown_service_is_404_before_its_body_is_read(demo: Any, url: str) -> None:
    client, spy = demo
    resp = client.post(url, content=HUGE, headers={"content-type": "text/plain"})
    assert resp.json() == {"error": "unknown-service", "status": 404,
                           "detail": "no CDS service 'nope'; see GET /cds-services"}
    assert spy.body_reads == 0
    assert client.get("/cds-services/nope/feedback/report").status_code == 404


@pytest.mark.parametrize("url", [SERVICE_URL, FEEDBACK_URL])
def test_body_checks_content_type_then_size_then_json(demo: Any, url: str) -> None:
    client, spy = demo
    cases = [
        (HUGE, "text/plain", 415, "unsupported-media-type"),
        (HUGE, "application/json", 413, "payload-too-large"),
        (b"{not json", "application/json", 400, "malformed-json"),
        (b"[]", "application/json", 400, "malformed-json"),
        (b" ", "application/json", 400, "malformed-json"),
        (json.dumps({"context": nested(80)}).encode(), "application/json", 400, "too-deeply-nested"),
    ]
    for body, content_type, status, error in cases:
        resp = client.post(url, content=body, headers={"content-type": content_type})
        assert (resp.status_code, resp.json()["error"]) == (status, error), (body[:20], resp.text)
    assert spy.body_reads <= len(cases) - 2  # the 415 and the Content-Length 413 read nothing


def test_each_route_has_its_own_limits(demo: Any) -> None:
    client, _ = demo
    over_feedback_limit = b'{"pad": "' + b"x" * (1536 * 1024) + b'"}'
    hook = client.post(SERVICE_URL, content=over_feedback_limit, headers={"content-type": "application/json"})
    assert hook.status_code == 400 and hook.json()["error"] == "invalid-request"  # read and validated
    feedback = client.post(FEEDBACK_URL, content=over_feedback_limit, headers={"content-type": "application/json"})
    assert feedback.status_code == 413 and feedback.json()["error"] == "payload-too-large"
    # Only the hook's prefetch is exempt from the depth walk.
    deep_prefetch = valid_hook()
    deep_prefetch["prefetch"]["patient"]["extension"] = [nested(80)]
    assert client.post(SERVICE_URL, json=deep_prefetch).status_code == 200
    deep_feedback = {"feedback": [], "prefetch": nested(80)}
    resp = client.post(FEEDBACK_URL, json=deep_feedback)
    assert resp.status_code == 400 and resp.json()["error"] == "too-deeply-nested"


def test_the_body_is_read_and_parsed_once(demo: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client, spy = demo
    parses: list[int] = []
    real = dependencies.parse_json_object

    def counting(body: bytes, max_depth: int | None = None, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
        parses.append(len(body))
        return real(body, max_depth, skip)

    monkeypatch.setattr(dependencies, "parse_json_object", counting)
    resp = client.post(SERVICE_URL, json=valid_hook())
    assert resp.status_code == 200 and "cards" in resp.json()
    assert len(parses) == 1 and spy.body_reads == 1


# ------------------------------------------------------------------------------------ validation errors


def _errors_of(model: type[BaseModel], data: dict[str, Any]) -> Any:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return info.value.errors()


def test_hook_and_feedback_validation_errors_are_formatted_alike(demo: Any) -> None:
    client, _ = demo
    bad_hook = {**valid_hook(), "hookInstance": 7, "context": {"patientId": {"x": 1}}}
    bad_feedback = {"feedback": [{"card": 7, "outcome": "maybe", "outcomeTimestamp": "2026-11-20T10:05:00Z"}]}
    hook = client.post(SERVICE_URL, json=bad_hook)
    feedback = client.post(FEEDBACK_URL, json=bad_feedback)
    assert hook.json() == {"error": "invalid-request", "status": 400,
                           "detail": validation_detail(_errors_of(HookRequest, bad_hook))}
    assert feedback.json() == {"error": "invalid-feedback", "status": 400,
                               "detail": validation_detail(_errors_of(FeedbackRequest, bad_feedback))}
    assert "hookInstance: " in hook.json()["detail"] and "feedback.0.card: " in feedback.json()["detail"]


def test_every_validation_error_goes_through_the_one_formatter(demo: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = demo
    monkeypatch.setattr(errors, "validation_detail", lambda errs: f"{len(errs)} formatted")
    answers = [
        client.post(SERVICE_URL, json={"hook": "patient-view"}),
        client.post(FEEDBACK_URL, json={"feedback": "none"}),
        client.post("/demo/timeline", json={"hook": "patient-view"}),
        client.get("/demo/order-request/mbc-demo-02"),  # FastAPI's own RequestValidationError: no `draft`
    ]
    for resp in answers:
        assert resp.status_code == 400 and re.fullmatch(r"\d+ formatted", resp.json()["detail"]), resp.text
    assert answers[3].json()["error"] == "invalid-request"


def test_validation_detail_names_where_and_what_and_stops_at_five() -> None:
    errs = [{"loc": ("context", "patientId"), "msg": "Field required"}, {"loc": (), "msg": "bad"},
            {"loc": ("feedback", 0, "card")}]
    assert validation_detail(errs) == "context.patientId: Field required; body: bad; feedback.0.card: invalid"
    many = [{"loc": (f"f{i}",), "msg": "m"} for i in range(9)]
    assert validation_detail(many).count(";") == 4


def test_a_missing_query_parameter_is_a_400_naming_it(demo: Any) -> None:
    client, _ = demo
    resp = client.get("/demo/order-request/mbc-demo-02")
    assert resp.json() == {"error": "invalid-request", "status": 400, "detail": "query.draft: Field required"}


# ------------------------------------------------------------------------------------- unexpected errors


def test_no_handler_for_bare_exceptions_remains(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path))
    assert Exception not in app.exception_handlers and 500 not in app.exception_handlers


def test_an_unexpected_error_in_a_dependency_is_the_middlewares_500(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> bool:
        raise ValueError(f"cannot walk {PID}")

    monkeypatch.setattr(dependencies, "json_depth_exceeds", broken)
    # raise_server_exceptions (the default): had the error got past the middleware, the client would raise it.
    with TestClient(create_app(make_settings(tmp_path))) as client:
        resp = client.post(SERVICE_URL, json=valid_hook(), headers={"X-Request-ID": "req-dep"})
    assert resp.status_code == 500 and resp.headers["x-request-id"] == "req-dep"
    assert resp.json() == {"error": "internal-error", "status": 500,
                           "detail": "the service failed; the error was logged"}
    assert resp.content == errors.error_body(500, "internal-error", "the service failed; the error was logged")
    assert PID not in resp.text


def test_nothing_to_read_is_one_answer_whatever_found_it(tmp_path: Path) -> None:
    """No prefetch at all, or only keys the service did not ask for (found empty once read): the same 412 from the
    one handler of app.routes.errors."""
    expected = {"error": "no-data", "status": 412,
                "detail": "no prefetch data and no fhirServer to read the patient's record from"}
    with TestClient(create_app(make_settings(tmp_path))) as client:
        for prefetch in ({}, {"not-asked-for": None}):
            resp = client.post(SERVICE_URL, json={**valid_hook(), "prefetch": prefetch})
            assert resp.status_code == 412 and resp.json() == expected, (prefetch, resp.text)


# ----------------------------------------------------------------------------------------- demo routes


def test_demo_routes_are_404_off_demo_mode_before_parameters_or_body(jwt_on: Any) -> None:
    client, spy, _ = jwt_on
    for resp in (client.get("/demo/order-request/mbc-demo-02"),  # no `draft`: 404 still, not 400
                 client.post("/demo/timeline", content=HUGE, headers={"content-type": "text/plain"}),
                 client.get("/demo/samples")):
        assert resp.status_code == 404 and resp.json()["error"] == "demo-mode-off", resp.text
    assert spy.body_reads == 0


# ------------------------------------------------------------------------------------------------ cost


def test_dependencies_run_on_the_event_loop_and_nest_nothing() -> None:
    """A plain `def` dependency runs in a worker thread, and FastAPI solves nested dependencies again on every
    request: both cost each hook time for nothing."""
    seen = 0
    for module in (discovery, feedback, health, knowledge, services, viewer):
        for route in module.router.routes:
            assert isinstance(route, APIRoute)
            for dep in route.dependant.dependencies:
                assert inspect.iscoroutinefunction(dep.call), (route.path, dep.call)
                assert not dep.dependencies, (route.path, dep.call)
                seen += 1
    assert seen >= 15


# --------------------------------------------------------------------------------------------- OpenAPI


def test_dependencies_add_nothing_to_the_openapi_document(tmp_path: Path) -> None:
    schema = create_app(make_settings(tmp_path)).openapi()
    for path, item in schema["paths"].items():
        for method, op in item.items():
            params = {(p["in"], p["name"]) for p in op.get("parameters", [])}
            expected = {("path", name) for name in re.findall(r"{(\w+)}", path)}
            if path == "/demo/order-request/{sample_id}":
                expected.add(("query", "draft"))
            assert params == expected, (method, path, params)
            assert "422" not in op["responses"], (method, path)
    for path, model in ((SERVICE_URL.replace("mbc-palliative-care", "{service_id}"), "HookRequest"),
                        ("/cds-services/{service_id}/feedback", "FeedbackRequest")):
        body = schema["paths"][path]["post"]["requestBody"]
        assert body["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model}"}
