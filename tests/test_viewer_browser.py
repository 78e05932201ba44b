"""The card viewer in a real browser: Debian's headless Chromium driven by Playwright for Python.

The app runs under uvicorn on a free port (JWT off, a temporary SQLite file); the browser picks a sample
patient, fires the hook through the real endpoint, accepts a suggestion and dismisses a card with a reason;
the feedback rows are then read back from the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from app.store.models import Feedback
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


def test_accept_and_dismiss_store_feedback(browser: object, tmp_path: Path) -> None:
    with serve_app(tmp_path, require_jwt=False) as (base, db_file):
        page = browser.new_page()  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(base + "/")
        page.wait_for_selector("body[data-ready='true']")
        # the bone-pain patient: acute phase, cards with suggestions
        page.select_option("#sample-select", "mbc-demo-01")
        page.get_by_role("button", name="Fire patient-view", exact=True).click()
        page.wait_for_selector("#cards article.card")
        assert "card" in page.locator("#status").inner_text()

        # the overview card on top: phase, sites and evidence
        overview = page.locator("#overview [data-rule='mbc-overview']")
        assert overview.count() == 1
        assert "acute" in overview.locator(".phase").inner_text().lower()
        assert overview.locator(".evidence li").count() >= 1

        # indicator colours as classes, markdown rendered as HTML (no literal ** left)
        cards = page.locator("#cards article.card")
        assert cards.count() >= 3
        assert page.locator("#cards article.card.warning, #cards article.card.critical").count() >= 1
        first_detail = cards.first.locator(".detail")
        assert first_detail.locator("strong").count() >= 1
        assert "**" not in first_detail.inner_text()

        # Accept the first suggestion of the palliative care referral card
        card = page.locator("#cards article[data-rule='referral-palliative-care']")
        accept = card.locator("button.accept").first
        label = accept.get_attribute("aria-label") or ""
        assert label.startswith("Accept: ")
        accept.click()
        result = card.locator(".result")
        result.filter(has_text="Accepted").wait_for()
        assert "feedback stored" in result.inner_text()
        assert accept.is_disabled()

        # Dismiss another card with an override reason
        other = page.locator("#cards article[data-rule='key-worker']")
        other.locator("select").select_option(label="Patient declined")
        other.locator("button.dismiss-btn").click()
        other.locator(".result").filter(has_text="Dismissed").wait_for()
        assert errors == []
        page.close()

    rows = _feedback_rows(db_file)
    by_rule = {r.rule_id: r for r in rows}
    assert set(by_rule) == {"referral-palliative-care", "key-worker"}
    accepted = by_rule["referral-palliative-care"]
    assert accepted.outcome == "accepted" and len(accepted.accepted_suggestions) == 1
    overridden = by_rule["key-worker"]
    assert overridden.outcome == "overridden" and overridden.override_code == "patient-declined"


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

        page.locator("#paste summary").click()
        page.fill("#bundle-input", orjson.dumps(bundle).decode())
        page.get_by_role("button", name="Fire patient-view with this Bundle").click()
        page.wait_for_selector("#cards article.card")
        assert page.locator("#cards article[data-rule='emergency-spinal-cord-compression'].critical").count() == 1

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
