"""What every clinical predicate shares: the result type, negation guards and evidence helpers.

A predicate takes the evaluation and its argument and returns None when false, or the evidence (facts with
resource references) when true, so that the card can say why it fired. What a negated condition ("not X") rests
on and tells the clinician is declared as a `Negation`, next to the predicate it negates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from app.clinical.evaluation import MEDICATION_TYPES, Evaluation, Evidence
from app.clinical.facts import COMPLICATION_LABELS, SITE_LABELS, Dated, SiteFact
from app.clinical.fhirtime import fmt_date

Findings = list[Evidence] | None


@dataclass(frozen=True, slots=True)
class Negation:
    """What "not X" rests on: it is never claimed while a resource type X reads is unreadable or only partly read
    (the missing part may hold X), nor while `unknown` holds; `text` is what the absence tells the clinician."""

    reads: frozenset[str]
    text: str | None = None
    unknown: Callable[[Evaluation], bool] | None = None

    def withheld(self, ev: Evaluation) -> bool:
        return bool(ev.unreadable_types & self.reads) or (self.unknown is not None and self.unknown(ev))

    def evidence(self, arg: str | None) -> list[Evidence]:
        return [Evidence(self.text.format(arg=(arg or "").replace("-", " ")))] if self.text else []


@dataclass(frozen=True, slots=True)
class Named:
    """A predicate under its PlanDefinition name: the function, the arguments it accepts (None: takes none) and
    what its negation rests on (None: "not X" needs no reading guard and names no absence)."""

    fn: Callable[[Evaluation, str | None], Findings]
    args: frozenset[str] | None = None
    negation: Negation | None = None


# -- medication completeness (record helper, rules v2) ---------------------------------------------------
def medications_unknown(ev: Evaluation) -> bool:
    """True when absence of a drug cannot be claimed: medications unreadable, or one could not be classified."""
    return bool(ev.unreadable_types & MEDICATION_TYPES) or not ev.facts.medications_complete


def unclassified_evidence(ev: Evaluation) -> list[Evidence]:
    """One line per active medication that could not be placed in a drug class."""
    return [Evidence(f"could not classify the medication '{d.label}' (no drug class recognised; absence claims "
                     "and drug drafts that rest on the medication list are withheld)", (d.ref,))
            for d in ev.facts.unclassified_medications]


_ACP_TYPES = frozenset({"Observation", "DocumentReference", "Consent", "Goal", "Procedure", "ServiceRequest",
                        "Condition"})
_CONDITIONS = frozenset({"Condition"})
_OBSERVATIONS = frozenset({"Observation"})
NOT_ON_DRUG_CLASS = Negation(MEDICATION_TYPES, "no active {arg} on the medication list",
                             # nor while the list holds a medication that could not be classified (rules v2)
                             unknown=medications_unknown)
NO_SERVICE = Negation(frozenset({"ServiceRequest", "Encounter", "CareTeam"}),
                      "no {arg} referral, encounter or care team member on record")
NO_ACP = Negation(_ACP_TYPES, "no advance care planning on record (advance directive, proxy, code status, goals of "
                              "care)")
NO_CODE_STATUS_OR_PLACE_OF_DEATH = Negation(_ACP_TYPES, "code status and/or preferred place of death not on record")
NO_COMPLICATION = Negation(_CONDITIONS, "no {arg} on record")
NO_CONDITION = Negation(_CONDITIONS)
NO_OBSERVATION = Negation(_OBSERVATIONS)
NO_TREATMENT = Negation(frozenset({"Procedure", "ServiceRequest"}))
NO_ALLERGY = Negation(frozenset({"AllergyIntolerance"}))


# -- evidence helpers -------------------------------------------------------------------------------------------
def dated_evidence(label: str, items: list[Dated]) -> Evidence:
    dates = sorted(fmt_date(i.when) for i in items if i.when is not None)
    when = f" (since {dates[0]})" if dates else ""
    return Evidence(f"{label}{when}", tuple(dict.fromkeys(i.ref for i in items)))


def site_evidence(ev: Evaluation, site: str) -> Evidence | None:
    fact = ev.facts.sites.get(site)
    if fact is None:
        return None
    return Evidence(f"{SITE_LABELS[site]} metastasis (first recorded {fmt_date(fact.first)})", tuple(fact.refs))


def complication_on_record(ev: Evaluation, name: str) -> Evidence | None:
    fact = ev.facts.complications.get(name)
    return None if fact is None else complication_evidence(name, fact)


def complication_evidence(name: str, fact: SiteFact) -> Evidence:
    return Evidence(f"{COMPLICATION_LABELS[name]} on record ({fmt_date(fact.first)})", tuple(fact.refs))


def newest(items: Iterable[Dated]) -> Dated | None:
    """The item with the latest date (the first of equals); undated items never win."""
    dated = [(i.when, i) for i in items if i.when is not None]
    return max(dated, key=lambda pair: pair[0])[1] if dated else None


def all_of(*parts: Evidence | None) -> Findings:
    return [p for p in parts if p is not None] if all(p is not None for p in parts) else None


def any_of(*parts: Evidence | None) -> Findings:
    found = [p for p in parts if p is not None]
    return found or None


def latest_date(fact: SiteFact | None) -> datetime | None:
    return None if fact is None else fact.last or fact.first


def observations_unread(ev: Evaluation) -> bool:
    """"Not recorded" cannot be claimed when the Observations could not be read: data-incomplete says so."""
    return "Observation" in ev.unreadable_types
