"""Screenshots of the card viewer for every sample patient, for reviewers: `python -m tests.screenshots OUTDIR`.

Serves the app (JWT off, a throw-away SQLite file) on a free port, opens the viewer in headless Chromium
(/usr/bin/chromium, through Playwright), fires patient-view for each sample patient and saves, per patient,
OUTDIR/<id>.png (the page as a clinician first sees it: cards collapsed, critical ones open, the timeline
below) and OUTDIR/<id>-timeline.svg (the timeline on its own). Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def open_patient(page: Any, base: str, sample_id: str) -> None:
    """Load the viewer, fire patient-view for one sample and wait for its cards and timeline."""
    page.goto(base + "/")
    page.wait_for_selector("body[data-ready='true']")
    page.select_option("#sample-select", sample_id)
    page.get_by_role("button", name="Fire patient-view", exact=True).click()
    page.wait_for_selector("#status.ok, #status.error")
    page.wait_for_selector("body[data-timeline]")


def take(outdir: Path, sample_ids: Sequence[str] | None = None) -> list[Path]:
    from playwright.sync_api import sync_playwright

    from app.samples import list_samples
    from tests.served_app import serve_app

    outdir.mkdir(parents=True, exist_ok=True)
    ids = list(sample_ids or [s["id"] for s in list_samples()])
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp, serve_app(Path(tmp), require_jwt=False) as (base, _db), \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            for sample_id in ids:
                open_patient(page, base, sample_id)
                png = outdir / f"{sample_id}.png"
                page.screenshot(path=str(png), full_page=True)
                svg = outdir / f"{sample_id}-timeline.svg"
                svg.write_text(page.locator("#timeline-body svg").evaluate("n => n.outerHTML"), encoding="utf-8")
                written += [png, svg]
                print(f"{sample_id}: {png} ({page.locator('#cards article.card').count()} cards), {svg}")
        finally:
            browser.close()
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.screenshots", description=__doc__)
    parser.add_argument("outdir", help="directory for the PNG and SVG files (created if missing)")
    parser.add_argument("--sample", action="extend", nargs="+", metavar="ID", help="only these sample ids")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print("error: needs Chromium at /usr/bin/chromium (Debian: apt-get install chromium; `bash .ci/run` "
              "installs it)", file=sys.stderr)
        return 2
    take(Path(args.outdir), args.sample)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
