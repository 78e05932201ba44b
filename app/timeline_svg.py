"""The timeline JSON (app/clinical/timeline.py) drawn as one self-contained SVG, by the server and the CLI alike.

Hand-built rather than a charting library: a few lanes of rectangles, polylines and markers need no
dependency, work offline, and only use SVG presentation attributes (no inline style), which the viewer's
Content-Security-Policy (style-src 'self') would block. Every marker is an <a> to its resource's reference
(`link_base` + "Observation/123") with a <title> tooltip and a `data-ref` the viewer uses to show the resource.
Text from the record (drug names) is XML-escaped.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from app.clinical.thresholds import ALBUMIN_PAIRING

WIDTH = 960
LEFT = 150
RIGHT = 24
PANEL_H = 56
GAP = 14
PHASE_FILL = {"acute": "#f6cdc9", "stable": "#cfe8d5", "unknown": "#e4e6ea"}
PHASE_TEXT = {"acute": "acute phase", "stable": "stable phase", "unknown": "phase unknown"}
EVENT_STYLE = {  # kind -> (row, fill, label)
    "treatment": (0, "#1f5fbf", "treatment"),
    "admission": (1, "#b3261e", "unplanned encounter"),
    "complication": (2, "#a86400", "complication"),
}
SERIES_COLOUR = {"pain-score": "#b3261e", "ecog": "#5b3fa0", "karnofsky": "#5b3fa0",
                 "corrected-calcium": "#a86400", "body-weight": "#1b6e3a"}
ALWAYS_SHOWN = {"pain-score", "ecog", "corrected-calcium", "body-weight"}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _t(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _fmt(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


class _Canvas:
    def __init__(self, start: datetime, end: datetime) -> None:
        self.start, self.end = start, end
        self.parts: list[str] = []
        self.span = max((end - start).total_seconds(), 1.0)

    def x(self, when: datetime) -> float:
        frac = (when - self.start).total_seconds() / self.span
        return round(LEFT + min(max(frac, 0.0), 1.0) * (WIDTH - LEFT - RIGHT), 1)

    def add(self, text: str) -> None:
        self.parts.append(text)

    def text(self, x: float, y: float, content: str, *, size: int = 11, anchor: str = "start",
             fill: str = "#1d2330", weight: str = "normal", cls: str = "") -> None:
        klass = f' class="{cls}"' if cls else ""
        self.add(f'<text x="{x}" y="{y}" font-size="{size}" text-anchor="{anchor}" fill="{fill}" '
                 f'font-weight="{weight}"{klass}>{escape(content)}</text>')


def _link(link_base: str, ref: str, title: str, cls: str, shape: str, data: Iterable[tuple[str, str]] = ()) -> str:
    extra = "".join(f" data-{k}={quoteattr(v)}" for k, v in data)
    return (f'<a href={quoteattr(link_base + ref)} class="{cls}" data-ref={quoteattr(ref)}{extra}>'
            f"<title>{escape(title)}</title>{shape}</a>")


def _ticks(start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    days = (end - start).days
    if days <= 62:
        first = (start + timedelta(days=(7 - start.weekday()) % 7)).replace(hour=0, minute=0, second=0,
                                                                          microsecond=0)
        return [(first + timedelta(weeks=i), (first + timedelta(weeks=i)).strftime("%d %b"))
                for i in range(days // 7 + 2) if first + timedelta(weeks=i) <= end]
    step = 1 if days <= 400 else 3 if days <= 1200 else 12
    out: list[tuple[datetime, str]] = []
    year, month = start.year, start.month + 1
    while True:
        if month > 12:
            year, month = year + 1, month - 12
        when = datetime(year, month, 1, tzinfo=start.tzinfo)
        if when > end:
            return out
        if (month - 1) % step == 0:
            out.append((when, f"{_MONTHS[month - 1]} {year}" if month == 1 or not out else _MONTHS[month - 1]))
        month += 1


def _phase_lane(c: _Canvas, phases: list[dict[str, Any]], y: float, h: float) -> None:
    c.text(LEFT - 8, y + h / 2 + 4, "Phase", anchor="end", weight="bold")
    for band in phases:
        x0, x1 = c.x(_t(band["start"])), c.x(_t(band["end"]))
        if x1 - x0 < 0.5:
            continue
        name = band["phase"]
        title = f"{PHASE_TEXT.get(name, name)}: {band['start'][:10]} to {band['end'][:10]}"
        c.add(f'<g class="tl-phase" data-phase="{escape(name)}"><title>{escape(title)}</title>'
              f'<rect x="{x0}" y="{y}" width="{round(x1 - x0, 1)}" height="{h}" fill="{PHASE_FILL.get(name, "#eee")}"/>'
              "</g>")
        if x1 - x0 > 70:
            c.text((x0 + x1) / 2, y + h / 2 + 4, PHASE_TEXT.get(name, name), size=10, anchor="middle")
        elif band is phases[-1]:
            # The current phase is often days old: too narrow to hold its name, so it goes above the lane.
            c.text(x1, y - 3, f"{PHASE_TEXT.get(name, name)} since {band['start'][:10]}", size=10, anchor="end",
                   weight="bold", fill="#b3261e" if name == "acute" else "#1d2330", cls="tl-phase-now")


def _shade(c: _Canvas, phases: list[dict[str, Any]], y: float, h: float) -> None:
    for band in phases:
        if band["phase"] == "acute":
            x0, x1 = c.x(_t(band["start"])), c.x(_t(band["end"]))
            c.add(f'<rect x="{x0}" y="{y}" width="{round(x1 - x0, 1)}" height="{h}" fill="{PHASE_FILL["acute"]}" '
                  'fill-opacity="0.35"/>')


def _series_panel(c: _Canvas, s: dict[str, Any], y: float, link_base: str, phases: list[dict[str, Any]]) -> None:
    key, unit = s["key"], s.get("unit", "")
    low, high = float(s["min"]), float(s["max"])
    colour = SERIES_COLOUR.get(key, "#1d2330")

    def yv(value: float) -> float:
        frac = (min(max(value, low), high) - low) / ((high - low) or 1)
        return round(y + PANEL_H - frac * PANEL_H, 1)

    c.add(f'<g class="tl-series" data-series="{escape(key)}">')
    c.add(f'<rect x="{LEFT}" y="{y}" width="{WIDTH - LEFT - RIGHT}" height="{PANEL_H}" fill="#ffffff" '
          'stroke="#d5d9e0"/>')
    _shade(c, phases, y, PANEL_H)
    c.text(LEFT - 26, y + PANEL_H / 2, s["label"], anchor="end", weight="bold", cls="tl-series-label")
    if unit:
        c.text(LEFT - 26, y + PANEL_H / 2 + 13, "0-10" if unit == "/10" else unit, size=10, anchor="end",
               fill="#5b6270")
    c.text(LEFT - 4, y + 9, _fmt(high), size=9, anchor="end", fill="#5b6270")
    c.text(LEFT - 4, y + PANEL_H, _fmt(low), size=9, anchor="end", fill="#5b6270")
    if s.get("threshold") is not None:
        ty = yv(float(s["threshold"]))
        c.add(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ty}" y2="{ty}" stroke="{colour}" '
              'stroke-dasharray="4 3" stroke-opacity="0.6"/>')
        c.text(WIDTH - RIGHT - 2, ty - 3, _fmt(float(s["threshold"])), size=9, anchor="end", fill=colour)
    points = [p for p in s["points"] if _t(p["t"]) >= c.start]
    if not points:
        note = "none in this window" if s["points"] else "none recorded"
        c.text(LEFT + 10, y + PANEL_H / 2 + 4, note, fill="#5b6270", cls="tl-empty")
    coords = [(c.x(_t(p["t"])), yv(float(p["value"]))) for p in points]
    if len(coords) > 1:
        c.add(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
              f'points="{" ".join(f"{x},{yy}" for x, yy in coords)}"/>')
    for p, (x, yy) in zip(points, coords, strict=True):
        shown_unit = "/10" if unit == "/10" else (" " + unit if unit else "")
        kind = "" if p.get("corrected", True) else f" (uncorrected: no albumin within {ALBUMIN_PAIRING.days} days)"
        title = f"{s['label']} {_fmt(float(p['value']))}{shown_unit}{kind} on {p['t'][:10]} ({p['ref']})"
        shape = f'<circle cx="{x}" cy="{yy}" r="4.5" fill="{colour}" stroke="#ffffff" stroke-width="1.5"/>'
        c.add(_link(link_base, p["ref"], title, "tl-point", shape, (("series", key), ("t", p["t"]))))
    c.add("</g>")


def _side_label(c: _Canvas, x: float, y: float, text: str, fill: str, size: int = 9) -> None:
    """A marker's label to its right, or to its left near the right edge (most findings are recent)."""
    if x > WIDTH - RIGHT - 5.5 * len(text):
        c.text(x - 9, y, text, size=size, anchor="end", fill=fill)
    else:
        c.text(x + 9, y, text, size=size, fill=fill)


def _sites_lane(c: _Canvas, sites: list[dict[str, Any]], y: float, link_base: str) -> float:
    h = 40
    c.text(LEFT - 8, y + 20, "Metastatic sites", anchor="end", weight="bold")
    c.add(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y + 14}" y2="{y + 14}" stroke="#d5d9e0"/>')
    for i, site in enumerate(s for s in sites if "first" in s):
        when = _t(site["first"])
        x = c.x(when)
        early = when < c.start
        shape = (f'<path d="M{x},{y + 7} l7,7 l-7,7 l-7,-7 z" fill="#5b3fa0" stroke="#ffffff"/>')
        title = f"{site['label']} metastasis first seen {site['first'][:10]} ({site['ref']})"
        c.add(_link(link_base, site["ref"], title, "tl-site", shape, (("site", site["key"]), ("t", site["first"]))))
        text = site["label"] + (f" (since {site['first'][:10]})" if early else "")
        _side_label(c, x, y + 34 if i % 2 else y + 11, text, "#5b3fa0", size=10)
    return h


def _events_lane(c: _Canvas, events: list[dict[str, Any]], y: float, link_base: str) -> float:
    row_h = 22
    for kind, (row, fill, label) in EVENT_STYLE.items():
        ry = y + row * row_h
        c.text(LEFT - 8, ry + 15, label.capitalize() + "s", anchor="end", weight="bold", size=10)
        c.add(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ry + 11}" y2="{ry + 11}" stroke="#eceef2"/>')
        last_x = -1e9
        for e in (e for e in events if e["kind"] == kind):
            when = _t(e["t"])
            x = c.x(when)
            cy = ry + 11
            if kind == "treatment":
                shape = f'<path d="M{x},{cy - 6} l6,11 l-12,0 z" fill="{fill}"/>'
            elif kind == "admission":
                shape = f'<rect x="{x - 5}" y="{cy - 5}" width="10" height="10" fill="{fill}"/>'
            else:
                shape = f'<circle cx="{x}" cy="{cy}" r="5" fill="{fill}"/>'
            title = f"{e['label']} on {e['t'][:10]} ({e['ref']})"
            c.add(_link(link_base, e["ref"], title, f"tl-event tl-event-{kind}", shape,
                        (("kind", kind), ("t", e["t"]))))
            # Labels only where they do not overlap the previous one; the tooltip always has the full text.
            if x - last_x > 120:
                label = e["label"] if len(e["label"]) <= 34 else e["label"][:33] + "\u2026"
                text = label + (f" (since {e['t'][:10]})" if when < c.start else "")
                _side_label(c, x, cy + 4, text, fill)
                last_x = x
    return row_h * len(EVENT_STYLE)


def _axis(c: _Canvas, y: float) -> None:
    c.add(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}" stroke="#5b6270"/>')
    for when, label in _ticks(c.start, c.end):
        x = c.x(when)
        c.add(f'<line x1="{x}" x2="{x}" y1="{y}" y2="{y + 4}" stroke="#5b6270"/>')
        c.text(x, y + 16, label, size=10, anchor="middle", fill="#5b6270", cls="tl-tick")
    c.text(c.x(c.end), y + 30, f"now ({c.end.date().isoformat()})", size=10, anchor="end", fill="#5b6270")


def render_timeline_svg(timeline: dict[str, Any], *, link_base: str = "", days: int | None = 120) -> str:
    """SVG text for a timeline; `days` limits the window to the last N days (older first-seen sites and
    treatments are pinned at the left edge with their date), None shows the whole record."""
    end = _t(timeline["end"])
    start = _t(timeline["start"])
    if days is not None:
        start = max(start, end - timedelta(days=days))
    c = _Canvas(start, end)
    series = [s for s in timeline["series"] if s["points"] or s["key"] in ALWAYS_SHOWN]
    y: float = 8
    c.text(8, y + 12, f"Patient course {start.date().isoformat()} to {end.date().isoformat()}", size=13,
           weight="bold")
    y += 24
    _phase_lane(c, timeline["phases"], y, 20)
    y += 20 + GAP
    for s in series:
        _series_panel(c, s, y, link_base, timeline["phases"])
        y += PANEL_H + GAP
    y += _sites_lane(c, timeline["sites"], y, link_base) + 4
    y += _events_lane(c, timeline["events"], y, link_base) + 6
    _axis(c, y)
    height = y + 40
    title = f"Timeline of patient {timeline['patientId']}"
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{WIDTH}" height="{round(height)}" '
            f'viewBox="0 0 {WIDTH} {round(height)}" role="img" aria-label={quoteattr(title)} '
            'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif">'
            f"<title>{escape(title)}</title>"
            f'<rect x="0" y="0" width="{WIDTH}" height="{round(height)}" fill="#fbfbfc"/>'
            + "".join(c.parts) + "</svg>\n")
