"""The card viewer in a real browser: Debian's headless Chromium driven by Playwright for Python.

The app runs under uvicorn on a free port (JWT off, a temporary SQLite file); the browser picks a sample
patient, fires the hook through the real endpoint, accepts suggestions and dismisses a card with a reason;
the feedback rows are then read back from the database. Layout checks look at elements (which cards are
open, one source line per card, the timeline's lanes and markers), never at pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from app.store.models import Feedback
from tests.screenshots import open_patient
from tests.served_app import serve_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="needs Chromium at /usr/bin/chromium (Debian: apt-get install chromium "
                              "chromium-driver; .ci/run installs it)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright for Python (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _feedback_rows(db_file: Path) -> list[Feedback]:
    engine = create_engine(f"sqlite:///{db_file}")
    try:
        with Session(engine) as s:
            return list(s.scalars(select(Feedback)))
    finally:
        engine.dispose()


def _open_card(card: object) -> None:
    toggle = card.locator("button.toggle")  # type: ignore[attr-defined]
    if toggle.get_attribute("aria-expanded") != "true":
        toggle.click()


def test_accept_and_dismiss_store_feedback(browser: object, tmp_path: Path) -> None:
    with serve_app(tmp_path, require_jwt=False) as (base, db_file):
        page = browser.new_page()  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # the bone-pain patient: acute phase, cards with suggestions
        open_patient(page, base, "mbc-demo-01")
        assert "card" in page.locator("#status").inner_text()

        # the overview is the compact patient header: phase, sites and the evidence behind the phase
        overview = page.locator("#patient [data-rule='mbc-overview']")
        assert overview.count() == 1
        assert page.locator("#cards [data-rule='mbc-overview']").count() == 0
        assert "acute" in overview.locator(".phase").inner_text().lower()
        assert overview.locator(".evidence li").count() >= 1

        # indicator colours as classes, markdown rendered as HTML (no literal ** left)
        cards = page.locator("#cards article.card")
        assert cards.count() >= 3
        assert page.locator("#cards article.card.warning, #cards article.card.critical").count() >= 1
        _open_card(cards.first)
        first_detail = cards.first.locator(".detail")
        assert first_detail.locator("strong").count() >= 1
        assert "**" not in first_detail.inner_text()

        # Accept the first suggestion of the palliative care referral card
        card = page.locator("#cards article[data-rule='referral-palliative-care']")
        _open_card(card)
        accept = card.locator("button.accept").first
        label = accept.get_attribute("aria-label") or ""
        assert label.startswith("Accept: ")
        accept.click()
        result = card.locator(".result")
        result.filter(has_text="Accepted").wait_for()
        assert "feedback stored" in result.inner_text()
        assert accept.is_disabled()

        # Dismiss another card with an override reason
        other = page.locator("#cards article[data-rule='bone-modifying-agent']")
        _open_card(other)
        other.locator("select").select_option(label="Patient declined")
        other.locator("button.dismiss-btn").click()
        other.locator(".result").filter(has_text="Dismissed").wait_for()
        assert errors == []
        page.close()

    rows = _feedback_rows(db_file)
    by_rule = {r.rule_id: r for r in rows}
    assert set(by_rule) == {"referral-palliative-care", "bone-modifying-agent"}
    accepted = by_rule["referral-palliative-care"]
    assert accepted.outcome == "accepted" and len(accepted.accepted_suggestions) == 1
    overridden = by_rule["bone-modifying-agent"]
    assert overridden.outcome == "overridden" and overridden.override_code == "patient-declined"


def test_two_suggestions_of_an_any_card_are_both_accepted(browser: object, tmp_path: Path) -> None:
    """The cord-compression card says selectionBehavior "any": the MRI and the oncology referral both go."""
    with serve_app(tmp_path, require_jwt=False) as (base, db_file):
        page = browser.new_page()  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        response: dict[str, object] = {}
        page.on("response", lambda r: response.update(r.json()) if r.url.endswith("/mbc-palliative-care")
                and r.request.method == "POST" else None)
        open_patient(page, base, "mbc-demo-03")
        card = page.locator("#cards article[data-rule='emergency-spinal-cord-compression']")
        issued = next(c for c in response["cards"]  # type: ignore[union-attr]
                      if c["source"]["topic"]["code"] == "emergency-spinal-cord-compression")
        assert issued["selectionBehavior"] == "any" and len(issued["suggestions"]) >= 2
        assert card.locator("ul.suggestions").get_attribute("data-selection") == "any"
        buttons = card.locator("button.accept")
        first, second = buttons.nth(0), buttons.nth(1)
        first.click()
        card.locator(".result").filter(has_text="feedback stored").wait_for()
        assert second.is_enabled(), "accepting one suggestion of an 'any' card must leave the others open"
        assert card.locator("button.dismiss-btn").is_enabled()
        second.click()
        card.locator("li.accepted").nth(1).wait_for()
        assert "feedback stored" in card.locator(".result").inner_text()
        assert errors == []
        page.close()

    rows = [r for r in _feedback_rows(db_file) if r.card_uuid == issued["uuid"]]
    assert {r.outcome for r in rows} == {"accepted"}
    accepted = [sid for r in rows for sid in r.accepted_suggestions]
    assert sorted(accepted) == sorted(s["uuid"] for s in issued["suggestions"][:2])
    assert len(rows) == 2


def test_at_most_one_card_and_feedback_shapes(browser: object, tmp_path: Path) -> None:
    """`at-most-one`: accepting one suggestion closes the others. Bodies as CDS Hooks 2.0 describes them."""
    import orjson

    card = {
        "uuid": "c-1", "summary": "Test card", "indicator": "warning", "selectionBehavior": "at-most-one",
        "detail": "**Why**\n- a reason\n\n**Source:** A long citation (document, section). Suggestions are drafts.",
        "source": {"label": "mbc-cds: A guideline", "topic": {"code": "test-rule"}},
        "suggestions": [{"label": "Option A", "uuid": "s-a"}, {"label": "Option B", "uuid": "s-b"}],
        "overrideReasons": [{"system": "urn:x", "code": "patient-declined", "display": "Patient declined"}],
    }
    posted: list[dict[str, object]] = []

    def capture(route: object) -> None:
        posted.append(orjson.loads(route.request.post_data or "{}"))  # type: ignore[attr-defined]
        route.fulfill(status=200, content_type="application/json", body='{"stored": 1}')  # type: ignore[attr-defined]

    with serve_app(tmp_path, require_jwt=False) as (base, _db):
        page = browser.new_page()  # type: ignore[attr-defined]
        page.route("**/feedback", capture)
        page.goto(base + "/")
        page.wait_for_selector("body[data-ready='true']")
        page.evaluate("c => { const box = document.getElementById('cards'); box.replaceChildren("
                      "window.mbcViewer.cardNode(c)); document.getElementById('cards-section').hidden = false; }",
                      card)
        node = page.locator("#cards article[data-rule='test-rule']")
        assert not node.locator(".card-body").is_visible()
        assert node.locator(".source").inner_text().startswith("Source: A guideline")
        assert node.locator(".source").get_attribute("title") == "A long citation (document, section)."
        node.locator("button.toggle").click()
        assert "Source:" not in node.locator(".card-body").inner_text()
        node.get_by_role("button", name="Accept: Option A").click()
        node.locator("li.accepted").wait_for()
        assert node.get_by_role("button", name="Accept: Option B").is_disabled()
        node.locator("select").select_option(label="Patient declined")
        node.locator("button.dismiss-btn").click()
        node.locator(".result").filter(has_text="Dismissed").wait_for()
        page.close()

    accepted, overridden = (p["feedback"][0] for p in posted)  # type: ignore[index]
    assert accepted["card"] == "c-1" and accepted["outcome"] == "accepted"
    assert accepted["acceptedSuggestions"] == [{"id": "s-a"}] and "outcomeTimestamp" in accepted
    assert overridden["outcome"] == "overridden" and "acceptedSuggestions" not in overridden
    assert overridden["overrideReason"] == {"reason": card["overrideReasons"][0]}  # type: ignore[index]


def test_collapsed_cards_patient_header_and_timeline(browser: object, tmp_path: Path) -> None:
    with serve_app(tmp_path, require_jwt=False) as (base, _db):
        page = browser.new_page(viewport={"width": 1100, "height": 900})  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        open_patient(page, base, "mbc-demo-03")
        cards = page.locator("#cards article.card")
        n = cards.count()
        assert n >= 3  # emergency mode (v2): the info cards wait, listed on the overview
        # collapsed to indicator, summary and one source line; only the critical card is open
        for i in range(n):
            card = cards.nth(i)
            critical = "critical" in (card.get_attribute("class") or "")
            assert card.locator(".indicator").is_visible() and card.locator("h3.summary").is_visible()
            assert card.locator(".source").count() == 1 and card.locator(".source").is_visible()
            assert card.locator(".card-body").is_visible() == critical
            assert (card.locator("button.toggle").get_attribute("aria-expanded") == "true") == critical
            assert "Source:" not in card.locator(".card-body").text_content()
        assert "critical" in (cards.first.get_attribute("class") or "")
        closed = cards.nth(1)
        closed.locator("button.toggle").click()
        assert closed.locator(".card-body").is_visible()
        assert closed.locator("button.toggle").get_attribute("aria-expanded") == "true"

        # the overview is a compact header line, and the header names the patient whose cards these are
        header = page.locator("#patient")
        assert header.locator(".overview-line").is_visible()
        assert not header.locator(".evidence").is_visible()
        assert "Patient/mbc-demo-03" in header.locator("#patient-facts").inner_text()
        critical_top = page.locator("#cards article.card.critical").first.bounding_box()
        assert critical_top is not None and critical_top["y"] < 900, "the critical card is on the first screen"

        # the timeline: its lanes and markers, every marker linked to a resource
        page.wait_for_selector("body[data-timeline='ready']")
        svg = page.locator("#timeline-body svg")
        assert svg.count() == 1
        for series in ("pain-score", "ecog", "corrected-calcium", "body-weight"):
            assert svg.locator(f"g.tl-series[data-series='{series}']").count() == 1, series
        assert svg.locator("a.tl-point[data-series='pain-score']").count() >= 2
        assert svg.locator("a.tl-point[data-series='ecog']").count() >= 2
        assert svg.locator("a.tl-site[data-site='spine']").count() == 1
        assert svg.locator("g.tl-phase[data-phase='acute']").count() >= 1
        assert svg.locator("a.tl-event-admission").count() >= 1
        assert svg.locator("a.tl-event-treatment").count() >= 1
        assert svg.locator("a.tl-event-complication").count() >= 1
        refs = svg.locator("a[data-ref]").evaluate_all("els => els.map(e => e.getAttribute('data-ref'))")
        assert refs and all("/" in r for r in refs)
        page.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)
        assert (tmp_path / "viewer.png").stat().st_size > 10_000

        # a point shows its resource, taken from the request that was sent
        point = svg.locator("a.tl-point[data-series='pain-score']").last
        ref = point.get_attribute("data-ref") or ""
        point.click()
        assert page.locator("#resource-view").is_visible()
        assert page.locator("#resource-title").inner_text() == ref
        assert f'"id": "{ref.split("/")[1]}"' in page.locator("#resource-json").inner_text()

        # the overview in the header takes feedback too
        header.locator(".overview-more > summary").click()
        header.locator(".overview button.dismiss-btn").click()
        header.locator(".overview .result").filter(has_text="Dismissed").wait_for()
        assert errors == []
        page.close()


def test_pasted_bundle_and_safe_markdown(browser: object, tmp_path: Path) -> None:
    import orjson

    from app.samples import sample_bundle

    bundle = sample_bundle("mbc-demo-03")
    with serve_app(tmp_path, require_jwt=False) as (base, _db):
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(base + "/viewer")
        page.wait_for_selector("body[data-ready='true']")
        html = page.evaluate("window.mbcViewer.renderMarkdown("
                             "'<img src=x onerror=alert(1)> **bold** *it*\\n- one\\n- two')")
        assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
        assert "<strong>bold</strong>" in html and "<em>it</em>" in html and "<ul><li>one</li>" in html

        # a sample patient first, then a pasted Bundle of another one: the header follows the Bundle
        page.select_option("#sample-select", "mbc-demo-01")
        page.get_by_role("button", name="Fire patient-view", exact=True).click()
        page.wait_for_selector("#patient-facts:has-text('Patient/mbc-demo-01')")
        page.locator("#paste summary").click()
        page.fill("#bundle-input", orjson.dumps(bundle).decode())
        page.get_by_role("button", name="Fire patient-view with this Bundle").click()
        page.wait_for_selector("#patient-facts:has-text('Patient/mbc-demo-03')")
        assert page.locator("#cards article[data-rule='emergency-spinal-cord-compression'].critical").count() == 1
        patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
        assert patient["name"][0]["family"] in page.locator("#patient-name").inner_text()

        page.fill("#bundle-input", "{not json")
        page.get_by_role("button", name="Fire patient-view with this Bundle").click()
        page.locator("#status.error").wait_for()
        assert "not valid JSON" in page.locator("#status").inner_text()
        page.close()


def test_viewer_says_it_needs_demo_mode_when_jwt_is_on(browser: object, tmp_path: Path) -> None:
    with serve_app(tmp_path, require_jwt=True, allowed_fhir_servers="*") as (base, _db):
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(base + "/")
        page.wait_for_selector("body[data-ready='demo-off']")
        banner = page.locator("#demo-off")
        assert banner.is_visible()
        assert "demo mode" in banner.inner_text()
        assert not page.locator("#choose").is_visible()
        page.close()
