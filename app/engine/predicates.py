"""Named predicates that PlanDefinition conditions refer to (language text/x-mbc-cds-predicate).

Each predicate returns None when false, or the evidence (facts with resource references) when true, so that
the card can say why it fired. Names and arguments are checked when the knowledge is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from app.clinical.facts import COMPLICATION_LABELS, COMPLICATIONS, DRUG_CLASSES, SERVICES, SITE_LABELS, Dated
from app.clinical.fhirtime import fmt_date
from app.clinical.phase import ASSESSMENTS
from app.engine.evaluation import Evaluation, Evidence
from app.read_gaps import nothing_readable

Result = list[Evidence] | None
Predicate = Callable[[Evaluation, str | None], Result]

LANGUAGE = "text/x-mbc-cds-predicate"
_EXPR = re.compile(r"^(not )?([A-Z][A-Za-z0-9]*)(?:\(([a-z0-9-]+)\))?$")


class KnowledgeError(ValueError):
    """The knowledge artifacts refer to something the engine does not define."""


@dataclass(frozen=True, slots=True)
class Spec:
    fn: Predicate
    args: frozenset[str] | None   # None: takes no argument


REGISTRY: dict[str, Spec] = {}
# What a negated condition tells the clinician, so that "why" also names what is missing from the record.
_ABSENCE_TEXT = {
    "HasService": "no {arg} referral, encounter or care team member on record",
    "OnDrugClass": "no active {arg} on the medication list",
    "AcpOnRecord": "no advance care planning on record (advance directive, proxy, code status, goals of care)",
    "AcpCodeStatusAndPlaceOfDeath": "code status and/or preferred place of death not on record",
    "HasComplication": "no {arg} on record",
}
MEDICATION_TYPES = frozenset({"MedicationRequest", "MedicationStatement", "Medication"})
_ACP_TYPES = frozenset({"Observation", "DocumentReference", "Consent", "Goal", "Procedure", "ServiceRequest",
                        "Condition"})
# The resource types a predicate reads: "not X" cannot be claimed while any of them is unreadable or only partly
# read (a first page without the rest), because the missing part may hold X.
_NEGATION_READS: dict[str, frozenset[str]] = {
    "OnDrugClass": MEDICATION_TYPES,
    "HasService": frozenset({"ServiceRequest", "Encounter", "CareTeam"}),
    "AcpOnRecord": _ACP_TYPES,
    "AcpCodeStatusAndPlaceOfDeath": _ACP_TYPES,
    "HasComplication": frozenset({"Condition"}),
    "BowelObstruction": frozenset({"Condition"}),
    "PoorPerformance": frozenset({"Observation"}),
}


# -- medication completeness (record helper, rules v2) ---------------------------------------------------
def medications_unknown(ev: Evaluation) -> bool:
    """True when absence of a drug cannot be claimed: medications unreadable, or one could not be classified."""
    return bool(ev.unreadable_types & MEDICATION_TYPES) or not ev.facts.medications_complete


def unclassified_evidence(ev: Evaluation) -> list[Evidence]:
    """One line per active medication that could not be placed in a drug class."""
    return [Evidence(f"could not classify the medication '{d.label}' (no drug class recognised; absence claims "
                     "and drug drafts that rest on the medication list are withheld)", (d.ref,))
            for d in ev.facts.unclassified_medications]


def predicate(name: str, args: frozenset[str] | None = None) -> Callable[[Predicate], Predicate]:
    def register(fn: Predicate) -> Predicate:
        REGISTRY[name] = Spec(fn, args)
        return fn
    return register


@dataclass(frozen=True, slots=True)
class Condition:
    negate: bool
    name: str
    arg: str | None
    source: str

    def __call__(self, ev: Evaluation) -> Result:
        if self.negate and ev.unreadable_types & _NEGATION_READS.get(self.name, frozenset()):
            # "Not on drug X", "no palliative care on record"...: not claimed from a record read in part.
            return None
        if self.negate and self.name == "OnDrugClass" and medications_unknown(ev):
            # Nor while the list holds a medication that could not be classified (rules v2): the claim is unknown,
            # so the rule and its draft stay silent; data-incomplete names the unclassified medication.
            return None
        result = REGISTRY[self.name].fn(ev, self.arg)
        if self.negate:
            if result is not None:
                return None
            absent = _ABSENCE_TEXT.get(self.name)
            return [Evidence(absent.format(arg=(self.arg or "").replace("-", " ")))] if absent else []
        return result


def compile_condition(expression: str) -> Condition:
    m = _EXPR.match(expression.strip())
    if not m:
        raise KnowledgeError(f"condition {expression!r} does not follow the grammar '[not ]Name[(arg)]'")
    negate, name, arg = bool(m.group(1)), m.group(2), m.group(3)
    spec = REGISTRY.get(name)
    if spec is None:
        raise KnowledgeError(f"condition {expression!r} names an unknown predicate {name!r}")
    if spec.args is None and arg is not None:
        raise KnowledgeError(f"predicate {name} takes no argument ({expression!r})")
    if spec.args is not None and arg not in spec.args:
        raise KnowledgeError(f"predicate {name} needs one of {sorted(spec.args)} ({expression!r})")
    return Condition(negate, name, arg, expression)


# -- helpers -------------------------------------------------------------------------------------------
def _dated(label: str, items: list[Dated]) -> Evidence:
    dates = sorted(fmt_date(i.when) for i in items if i.when is not None)
    when = f" (since {dates[0]})" if dates else ""
    return Evidence(f"{label}{when}", tuple(dict.fromkeys(i.ref for i in items)))


def _site(ev: Evaluation, site: str) -> Evidence | None:
    fact = ev.facts.sites.get(site)
    if fact is None:
        return None
    return Evidence(f"{SITE_LABELS[site]} metastasis (first recorded {fmt_date(fact.first)})", tuple(fact.refs))


def _complication(ev: Evaluation, name: str) -> Evidence | None:
    fact = ev.facts.complications.get(name)
    if fact is None:
        return None
    return Evidence(f"{COMPLICATION_LABELS[name]} on record ({fmt_date(fact.first)})", tuple(fact.refs))


def _measure(ev: Evaluation, name: str, label: str, days: int | None = None) -> Evidence | None:
    window = ev.facts.acute_window if days is None else ev.facts.assessment_window
    m = ev.facts.latest(name, window)
    if m is None:
        return None
    return Evidence(f"{label} {m.value:g} on {fmt_date(m.when)}", (m.ref,))


def _all(*parts: Evidence | None) -> Result:
    return [p for p in parts if p is not None] if all(p is not None for p in parts) else None


def _any(*parts: Evidence | None) -> Result:
    found = [p for p in parts if p is not None]
    return found or None


# -- phase ---------------------------------------------------------------------------------------------
def _phase_evidence(ev: Evaluation) -> list[Evidence]:
    return [Evidence(f"{e.code}: {e.text}", e.refs) for e in ev.phase.evidence]


@predicate("Always")
def _always(ev: Evaluation, _: str | None) -> Result:
    return []


@predicate("IsAcutePhase")
def _acute(ev: Evaluation, _: str | None) -> Result:
    return _phase_evidence(ev) if ev.phase.name == "acute" else None


@predicate("IsStablePhase")
def _stable(ev: Evaluation, _: str | None) -> Result:
    return [Evidence("stable phase: no acute signal in 30 days, assessed in 90 days")] \
        if ev.phase.name == "stable" else None


@predicate("IsUnknownPhase")
def _unknown(ev: Evaluation, _: str | None) -> Result:
    return [Evidence("phase unknown: no symptom or performance assessment in 90 days")] \
        if ev.phase.name == "unknown" else None


@predicate("IsStableOrUnknownPhase")
def _stable_or_unknown(ev: Evaluation, arg: str | None) -> Result:
    return _stable(ev, arg) or _unknown(ev, arg)


_ASSESSMENT_LABELS = {"pain": "pain score (0-10)", "performance": "performance status (ECOG / Karnofsky)",
                      "distress": "distress screen"}


def missing_assessments(ev: Evaluation) -> list[str]:
    f, window = ev.facts, ev.facts.assessment_window
    missing: list[str] = []
    if f.latest("pain-score", window) is None:
        missing.append("pain")
    if f.latest("ecog", window) is None and f.latest("karnofsky", window) is None:
        missing.append("performance")
    if all(f.latest(n, window) is None for n in ("distress", "phq9", "phq2", "gad7")):
        missing.append("distress")
    return [_ASSESSMENT_LABELS[m] for m in missing]


@predicate("AssessmentsMissing")
def _assessments_missing(ev: Evaluation, _: str | None) -> Result:
    if _observations_unread(ev):
        return None
    missing = missing_assessments(ev)
    if not missing and ev.phase.name != "unknown":
        return None
    text = ", ".join(missing) if missing else "no symptom or performance assessment"
    return [Evidence(f"not recorded in the last {ev.facts.assessment_window.days} days: {text}")]


@predicate("DataIncomplete")
def _data_incomplete(ev: Evaluation, _: str | None) -> Result:
    return [Evidence(f"could not be read: {p}") for p in ev.problems] + unclassified_evidence(ev) or None


# -- emergencies ---------------------------------------------------------------------------------------
@predicate("CordCompressionRisk")
def _cord_compression(ev: Evaluation, _: str | None) -> Result:
    direct = _complication(ev, "cord-compression")
    if direct is not None:
        return [direct]
    back = ev.facts.complications.get("back-pain")
    bone = _site(ev, "bone")
    if bone is None or back is None:
        return None
    # New or worsening back pain: back pain first recorded in the acute window.
    if not ev.facts.recent(back.first, ev.facts.acute_window):
        return None
    return [bone, Evidence(f"new back pain ({fmt_date(back.first)})", tuple(back.refs))]


@predicate("Hypercalcaemia")
def _hypercalcaemia(ev: Evaluation, _: str | None) -> Result:
    ca = ev.calcium
    if ca is not None and ca.high:
        return [Evidence(f"{ca.describe()} on {fmt_date(ca.when)}", ca.refs)]
    if ca is None:
        fact = ev.facts.complications.get("hypercalcaemia")
        if fact is not None and (fact.first is None or ev.facts.recent(fact.first, ev.facts.acute_window)):
            return [_complication(ev, "hypercalcaemia")]  # type: ignore[list-item]
    return None


@predicate("BowelObstruction")
def _bowel_obstruction(ev: Evaluation, _: str | None) -> Result:
    return _any(_complication(ev, "bowel-obstruction"))


# -- sites, complications, drugs, services -----------------------------------------------------------
_SITE_ARGS = frozenset(set(SITE_LABELS) | {"lung-or-pleura"})


@predicate("HasSite", _SITE_ARGS)
def _has_site(ev: Evaluation, arg: str | None) -> Result:
    if arg == "lung-or-pleura":
        return _any(_site(ev, "lung"), _site(ev, "pleura"))
    return _any(_site(ev, arg or ""))


_COMPLICATION_ARGS = frozenset(set(COMPLICATIONS) | {"fracture"})


@predicate("HasComplication", _COMPLICATION_ARGS)
def _has_complication(ev: Evaluation, arg: str | None) -> Result:
    name = "pathological-fracture" if arg == "fracture" else (arg or "")
    return _any(_complication(ev, name))


_DRUG_ARGS = frozenset(set(DRUG_CLASSES) | {"opioid"})


def drug_evidence(ev: Evaluation, cls: str) -> Evidence | None:
    classes = ("weak-opioid", "strong-opioid") if cls == "opioid" else (cls,)
    uses = [u for c in classes for u in ev.facts.drugs.get(c, [])]
    if not uses:
        return None
    names = ", ".join(dict.fromkeys(u.name for u in uses))
    return Evidence(f"active {cls.replace('-', ' ')}: {names}", tuple(u.ref for u in uses))


@predicate("OnDrugClass", _DRUG_ARGS)
def _on_drug(ev: Evaluation, arg: str | None) -> Result:
    return _any(drug_evidence(ev, arg or ""))


@predicate("HasService", frozenset(SERVICES))
def _has_service(ev: Evaluation, arg: str | None) -> Result:
    names = ("palliative-care", "hospice") if arg == "palliative-care" else (arg or "",)
    items = [i for n in names for i in ev.facts.services.get(n, [])]
    return [_dated(f"{(arg or '').replace('-', ' ')} already on record", items)] if items else None


# -- symptoms and site-specific ----------------------------------------------------------------------
@predicate("BonePain")
def _bone_pain(ev: Evaluation, _: str | None) -> Result:
    pain = ev.facts.latest("pain-score", ev.facts.acute_window)
    if pain is None or pain.value < 4:
        return None
    return _all(_site(ev, "bone"), Evidence(f"pain {pain.value:g}/10 on {fmt_date(pain.when)}", (pain.ref,)))


@predicate("BrainSymptomatic")
def _brain_symptomatic(ev: Evaluation, _: str | None) -> Result:
    site = _site(ev, "brain")
    symptoms = _any(_complication(ev, "cerebral-oedema"), _complication(ev, "seizure"))
    return [site, *symptoms] if site is not None and symptoms else None


def _performance(ev: Evaluation) -> tuple[float | None, float | None, list[Evidence]]:
    window = ev.facts.assessment_window
    ecog = ev.facts.latest("ecog", window)
    kps = ev.facts.latest("karnofsky", window)
    evidence = [Evidence(f"ECOG {ecog.value:g} on {fmt_date(ecog.when)}", (ecog.ref,))] if ecog else []
    if kps:
        evidence.append(Evidence(f"Karnofsky {kps.value:g} on {fmt_date(kps.when)}", (kps.ref,)))
    return (ecog.value if ecog else None, kps.value if kps else None, evidence)


@predicate("PoorPerformance")
def _poor_performance(ev: Evaluation, _: str | None) -> Result:
    ecog, kps, evidence = _performance(ev)
    poor = (ecog is not None and 3 <= ecog <= 4) or (ecog is None and kps is not None and kps <= 40)
    return evidence if poor else None


@predicate("GoodPerformance")
def _good_performance(ev: Evaluation, _: str | None) -> Result:
    ecog, kps, evidence = _performance(ev)
    good = (ecog is not None and ecog <= 1) or (ecog is None and kps is not None and kps >= 70)
    return evidence if good else None


@predicate("LiverSymptoms")
def _liver_symptoms(ev: Evaluation, _: str | None) -> Result:
    site = _site(ev, "liver")
    if site is None:
        return None
    pain = ev.facts.latest("pain-score", ev.facts.acute_window)
    pain_ev = Evidence(f"pain {pain.value:g}/10 on {fmt_date(pain.when)}", (pain.ref,)) \
        if pain is not None and pain.value >= 4 else None
    symptoms = _any(_complication(ev, "jaundice"), _complication(ev, "pruritus"), _complication(ev, "nausea"),
                    pain_ev)
    return [site, *symptoms] if symptoms else None


def _spo2_low(ev: Evaluation) -> Evidence | None:
    m = ev.facts.latest("spo2", ev.facts.acute_window)
    if m is None or m.value >= 90 or m.value <= 0:
        return None
    return Evidence(f"SpO2 {m.value:g} % on {fmt_date(m.when)}", (m.ref,))


@predicate("SpO2Low")
def _spo2(ev: Evaluation, _: str | None) -> Result:
    return _any(_spo2_low(ev))


@predicate("Breathlessness")
def _breathlessness(ev: Evaluation, _: str | None) -> Result:
    site = _any(_site(ev, "lung"), _site(ev, "pleura"))
    if site is None:
        return None
    signs = _any(_complication(ev, "dyspnoea"), _complication(ev, "pleural-effusion"), _spo2_low(ev))
    return [*site, *signs] if signs else None


@predicate("SkinDisease")
def _skin(ev: Evaluation, _: str | None) -> Result:
    return _any(_site(ev, "skin"), _complication(ev, "fungating-wound"))


# -- pain ladder ---------------------------------------------------------------------------------------
def _pain_line(ev: Evaluation) -> Evidence:
    p = ev.pain
    drugs = ", ".join(ev.facts.drug_names("non-opioid-analgesic", "weak-opioid", "strong-opioid")) or "none"
    score = f"pain {p.score:g}/10 on {fmt_date(p.when)} ({p.severity})" if p.score is not None else "no pain score"
    refs = tuple(r for r in [p.ref] if r)
    return Evidence(f"{score}; WHO ladder step {p.step} (analgesics: {drugs})", refs)


def _observations_unread(ev: Evaluation) -> bool:
    """"Not recorded" cannot be claimed when the Observations could not be read: data-incomplete says so."""
    return "Observation" in ev.unreadable_types


@predicate("PainScoreMissing")
def _pain_missing(ev: Evaluation, _: str | None) -> Result:
    if _observations_unread(ev):
        return None
    if ev.facts.latest("pain-score", ev.facts.acute_window) is not None:
        return None
    last = ev.facts.latest("pain-score")
    when = f"last recorded {fmt_date(last.when)}" if last else "never recorded"
    return [Evidence(f"no 0-10 pain score in {ev.facts.acute_window.days} days ({when})",
                     (last.ref,) if last else ())]


@predicate("PainStepUp")
def _pain_step_up(ev: Evaluation, _: str | None) -> Result:
    if medications_unknown(ev):
        return None  # the current ladder step is unknown: no treatment suggestion
    return [_pain_line(ev)] if ev.pain.step_up else None


@predicate("NextStep", frozenset({"non-opioid", "weak-opioid", "strong-opioid"}))
def _next_step(ev: Evaluation, arg: str | None) -> Result:
    target = ev.pain.target_step
    if target is None:
        return None
    if arg == "non-opioid":
        # The ladder keeps a non-opioid at every step: offer it when none is active.
        return None if ev.facts.on_drug("non-opioid-analgesic") else []
    wanted = {"weak-opioid": 2, "strong-opioid": 3}[arg or ""]
    return [] if target == wanted else None


@predicate("PainUncontrolledOnStrongOpioid")
def _pain_uncontrolled(ev: Evaluation, _: str | None) -> Result:
    return [_pain_line(ev)] if ev.pain.uncontrolled_on_strong_opioid else None


# -- referrals -------------------------------------------------------------------------------------------
@predicate("RehabilitationIndicated")
def _rehab(ev: Evaluation, _: str | None) -> Result:
    if ev.phase.name in ("stable", "unknown"):
        # Stable-phase cards still apply when the phase is unknown (clinical-rules section 3).
        return [Evidence(f"{ev.phase.name} phase: maintain strength and function")]
    if ev.phase.name != "acute":
        return None
    ecog, kps, evidence = _performance(ev)
    if (ecog is not None and ecog >= 2) or (ecog is None and kps is not None and kps <= 60):
        return evidence
    return None


@predicate("SocialWorkIndicated")
def _social_work(ev: Evaluation, _: str | None) -> Result:
    found = _phase_evidence(ev) if ev.phase.name == "acute" else []
    concern = _complication(ev, "financial-concern")
    if concern is not None:
        found.append(concern)
    return found or None


@predicate("HospiceIndicated")
def _hospice(ev: Evaluation, _: str | None) -> Result:
    ecog, kps, evidence = _performance(ev)
    if (ev.phase.name == "acute" and ecog == 4) or (kps is not None and kps <= 30):
        return evidence
    return None


@predicate("WeightLoss5")
def _weight_loss(ev: Evaluation, _: str | None) -> Result:
    w = ev.weight
    if w is None or w.percent < 5:
        return None
    return [Evidence(f"weight {w.from_kg:.1f} -> {w.to_kg:.1f} kg ({w.percent:g} % loss, "
                     f"{fmt_date(w.since)} to {fmt_date(w.when)})", w.refs)]


DISTRESS_SCREENS = ("distress", "phq9", "phq2", "gad7")


@predicate("DistressScreenMissing")
def _distress_missing(ev: Evaluation, _: str | None) -> Result:
    if _observations_unread(ev):
        return None
    # JCO OP 2021 lists the distress thermometer, PHQ and GAD-7 among screeners of similar accuracy.
    if any(ev.facts.latest(n, ev.facts.acute_window) is not None for n in DISTRESS_SCREENS):
        return None
    return [Evidence(f"no distress screen (distress thermometer, PHQ-9/PHQ-2, GAD-7) in "
                     f"{ev.facts.acute_window.days} days")]


DISTRESS_THRESHOLDS = (("distress", "distress thermometer", 4), ("phq9", "PHQ-9", 10), ("gad7", "GAD-7", 10))


def elevated_distress(ev: Evaluation) -> list[Evidence]:
    found: list[Evidence] = []
    for name, label, threshold in DISTRESS_THRESHOLDS:
        m = ev.facts.latest(name, ev.facts.acute_window)
        if m is not None and m.value >= threshold:
            found.append(Evidence(f"{label} {m.value:g} on {fmt_date(m.when)}", (m.ref,)))
    return found


@predicate("DistressElevated")
def _distress(ev: Evaluation, _: str | None) -> Result:
    return elevated_distress(ev) or None


@predicate("SpiritualConcern")
def _spiritual(ev: Evaluation, _: str | None) -> Result:
    return _any(_complication(ev, "spiritual-concern"))


# -- advance care planning -------------------------------------------------------------------------------
@predicate("AcpOnRecord")
def _acp_on_record(ev: Evaluation, _: str | None) -> Result:
    items = ev.facts.acp_items()
    return [_dated("advance care planning on record", items)] if items else None


@predicate("AcpCodeStatusAndPlaceOfDeath")
def _acp_complete(ev: Evaluation, _: str | None) -> Result:
    code_status = ev.facts.acp.get("code-status")
    place = ev.facts.acp.get("place-of-death")
    if not code_status or not place:
        return None
    return [_dated("code status on record", code_status), _dated("preferred place of death on record", place)]


def newest_acp(ev: Evaluation) -> Dated | None:
    dated = [i for i in ev.facts.acp_items() if i.when is not None]
    return max(dated, key=lambda i: i.when) if dated else None  # type: ignore[arg-type,return-value]


@predicate("AcpStale")
def _acp_stale(ev: Evaluation, _: str | None) -> Result:
    newest = newest_acp(ev)
    if newest is None or newest.when is None:
        return None
    if ev.now - newest.when > ev.acp_revisit:
        return [Evidence(f"newest advance care planning record {fmt_date(newest.when)} is older than "
                         f"{ev.acp_revisit.days // 30} months", (newest.ref,))]
    started = ev.phase.started if ev.phase.name == "acute" else None
    if started is not None and newest.when < started:
        return [Evidence(f"newest advance care planning record {fmt_date(newest.when)} predates the acute phase "
                         f"that began {fmt_date(started)}", (newest.ref,))]
    return None


# -- dynamic values --------------------------------------------------------------------------------------
DynamicValue = Callable[[Evaluation], str]
DYNAMIC_VALUES: dict[str, DynamicValue] = {
    "PhasePriority": lambda ev: "urgent" if ev.phase.name == "acute" else "routine",
    "HypercalcaemiaPriority": lambda ev: "stat" if ev.calcium is None or ev.calcium.severe else "urgent",
    "LiverPriority": lambda ev: "urgent" if ev.facts.has_complication("jaundice") else "routine",
    # Nothing checked at all (no Patient or no Conditions) must not look like a quiet record: a warning.
    "ReadGapPriority": lambda ev: "urgent" if nothing_readable(ev.gaps) else "routine",
}


def compile_dynamic_value(expression: str) -> DynamicValue:
    fn = DYNAMIC_VALUES.get(expression.strip())
    if fn is None:
        raise KnowledgeError(f"unknown dynamic value {expression!r}")
    return fn


ASSESSMENT_NAMES = ASSESSMENTS
