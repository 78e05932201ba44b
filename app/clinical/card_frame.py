"""The clinical frame of every card, handed to the engine with the vocabulary (app.service.knowledge).

The engine asks it (app.engine.frame.CardFrame) and lays out the answers: whether the rules speak for a patient,
what the overview and the lines around another card's "Why" say (app.clinical.overview), which conditions a draft
names as its reason, and which drafts must be withheld (app.clinical.draft_safety).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.clinical.draft_safety import draft_blockers
from app.clinical.evaluation import Evaluation, Evidence
from app.clinical.overview import Section, disease_line, overview_sections, phase_line
from app.clinical.predicates.phase import read_gap_evidence, scope_unreadable


class ClinicalCardFrame:
    def in_scope(self, ev: Evaluation) -> bool:
        return ev.facts.in_scope

    def out_of_scope_evidence(self, ev: Evaluation) -> list[Evidence]:
        # Silence is only safe when the record could be read; otherwise say what is missing. A Patient that
        # could not be read (HAPI: 404 for an id it does not know, while its searches answer empty) is such a
        # case: silence would read as "nothing to do" for a record never seen.
        evidence = read_gap_evidence(ev)
        if evidence and (ev.facts.breast_primary or ev.facts.metastasis or scope_unreadable(ev)):
            return evidence
        return []

    def overview(self, ev: Evaluation) -> list[Section]:
        return overview_sections(ev)

    def subject(self, ev: Evaluation) -> Evidence:
        return disease_line(ev)

    def status(self, ev: Evaluation) -> Evidence:
        return phase_line(ev)

    def draft_reasons(self, ev: Evaluation, evidence: Sequence[Evidence]) -> list[str]:
        """The conditions the evidence names; without any, the cancer itself: the metastasis conditions, else
        (M1 / stage IV from staging only) the primary. At most five."""
        refs = [r for e in evidence for r in e.refs if r.startswith("Condition/") and not r.endswith("(no id)")]
        if not refs:
            refs = [d.ref for d in ev.facts.metastasis + ev.facts.breast_primary if not d.ref.endswith("(no id)")]
        return list(dict.fromkeys(refs))[:5]

    def draft_withheld(self, ev: Evaluation, resource: dict[str, Any]) -> list[Evidence]:
        if ev.terminology is None:
            return []
        return [Evidence(w.text, w.refs) for w in draft_blockers(ev.facts, resource, ev.terminology)]


CARD_FRAME = ClinicalCardFrame()
