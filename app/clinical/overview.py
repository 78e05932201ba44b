"""What the overview card says about the patient, and the lines around every other card's "Why".

Structured, not Markdown: sections of a title, a text after it and evidence lines, which the engine lays out
(app.engine.frame). The phase, its acute-phase signals (JCO OP 2021) or what it rests on without any, the
metastatic sites, the history that fires no card and the progression pattern are chosen here.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.clinical.card_values import metastatic_sites
from app.clinical.evaluation import Evaluation, Evidence
from app.clinical.fhirtime import fmt_date
from app.clinical.predicates.emergencies import overview_history
from app.clinical.predicates.phase import phase_basis, phase_signals


@dataclass(frozen=True, slots=True)
class Section:
    """A titled block of the overview: the title, the text after it (None: none) and its evidence lines."""

    title: str
    text: str | None = None
    lines: tuple[Evidence, ...] = ()


def overview_sections(ev: Evaluation) -> list[Section]:
    """Phase (with its signals, or its basis without any), metastatic sites, history, progression pattern."""
    phase = ev.phase
    signals = f"(JCO OP 2021 acute-phase signals in the last {ev.facts.acute_window.days} days)" \
        if phase.evidence else None
    sections = [
        Section(f"Phase: {phase.name}", signals, tuple(phase_signals(ev) or phase_basis(ev))),
        Section("Metastatic sites:", metastatic_sites(ev),
                tuple(Evidence(f"{site.replace('-', ' ')} (first recorded {fmt_date(fact.first)})", tuple(fact.refs))
                      for site, fact in ev.facts.sites.items())),
    ]
    history = overview_history(ev)
    if history:
        sections.append(Section("History (no card)", None, tuple(history)))
    if phase.pattern:
        sections.append(Section("Progression pattern:", phase.pattern))
    return sections


def disease_line(ev: Evaluation) -> Evidence:
    """The metastatic disease a card concerns, on the metastasis conditions and the M1 staging."""
    refs = tuple(dict.fromkeys(d.ref for d in ev.facts.metastasis + ev.facts.staging_m1))
    return Evidence(f"metastatic breast cancer: {metastatic_sites(ev)}", refs)


def phase_line(ev: Evaluation) -> Evidence:
    """The phase, with the acute-phase signals it rests on when there are any."""
    phase = ev.phase
    if not phase.evidence:
        return Evidence(f"Phase: {phase.name}")
    return Evidence(f"Phase: {phase.name} ({'; '.join(e.text for e in phase.evidence)})")
