"""Named predicates that PlanDefinition conditions refer to (language text/x-mbc-cds-predicate).

Each predicate returns None when false, or the evidence (facts with resource references) when true, so that
the card can say why it fired. Names and arguments are checked when the knowledge is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from app.clinical import thresholds as T
from app.clinical.facts import (
    COMPLICATION_LABELS,
    COMPLICATIONS,
    DRUG_CLASSES,
    SERVICES,
    SITE_LABELS,
    TREATMENT_LABELS,
    TREATMENTS,
    Dated,
)
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
    "EndOfLife": frozenset({"Observation"}),
    "RenalImpairmentSevere": frozenset({"Observation"}),
    "CordCompressionRisk": frozenset({"Condition"}),
    "HasTreatment": frozenset({"Procedure", "ServiceRequest"}),
    "AllergyToClass": frozenset({"AllergyIntolerance"}),
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
    return [Evidence(f"stable phase: no acute signal in {ev.facts.acute_window.days} days, assessed in "
                     f"{ev.facts.assessment_window.days} days")] \
        if ev.phase.name == "stable" else None


@predicate("IsUnknownPhase")
def _unknown(ev: Evaluation, _: str | None) -> Result:
    return [Evidence(f"phase unknown: no symptom or performance assessment in {ev.facts.assessment_window.days} "
                     "days")] \
        if ev.phase.name == "unknown" else None


@predicate("IsStableOrUnknownPhase")
def _stable_or_unknown(ev: Evaluation, arg: str | None) -> Result:
    return _stable(ev, arg) or _unknown(ev, arg)


ASSESSMENT_KINDS = ("pain", "distress", "performance", "phase", "progression")
DISTRESS_SCREENS = ("distress", "phq9", "phq2", "gad7")
_PROGRESS_OBS = ("pain-score", "ecog", "karnofsky", *DISTRESS_SCREENS)


def _progression_event(ev: Evaluation) -> Dated | None:
    """The latest progression event in the assessment window: a new metastatic site or disease status
    'progressing' (clinical-rules section 5: assessment at diagnosis, progression, treatment change)."""
    f, window = ev.facts, ev.facts.assessment_window
    events = [Dated(ref=fact.refs[0] if fact.refs else "", when=fact.first, label=f"new {SITE_LABELS[site]} metastasis")
              for site, fact in f.sites.items() if fact.first is not None and f.recent(fact.first, window)]
    events += [Dated(ref=i.ref, when=i.when, label="disease status progressing")
               for i in f.progressing if i.when is not None and f.recent(i.when, window)]
    return max(events, key=lambda d: d.when) if events else None  # type: ignore[arg-type,return-value]


def missing_assessment_evidence(ev: Evaluation) -> dict[str, Evidence]:
    """Each missing assessment (kind -> why), in the order of the rules text; windows come from the settings."""
    f = ev.facts
    acute, assess = f.acute_window, f.assessment_window
    out: dict[str, Evidence] = {}
    if f.latest("pain-score", acute) is None:
        last = f.latest("pain-score")
        when = f"last {fmt_date(last.when)}" if last else "never recorded"
        out["pain"] = Evidence(f"no 0-10 pain score in {acute.days} days ({when})", (last.ref,) if last else ())
    if all(f.latest(n, acute) is None for n in DISTRESS_SCREENS):
        out["distress"] = Evidence(f"no distress screen (distress thermometer, PHQ-9 / PHQ-2, GAD-7) in "
                                   f"{acute.days} days")
    if f.latest("ecog", assess) is None and f.latest("karnofsky", assess) is None:
        out["performance"] = Evidence(f"no performance status (ECOG / Karnofsky) in {assess.days} days")
    if ev.phase.name == "unknown":
        out["phase"] = Evidence(f"phase unknown: no symptom or performance assessment in {assess.days} days")
    event = _progression_event(ev)
    if event is not None and event.when is not None:
        since = [m for n in _PROGRESS_OBS for m in f.series(n) if m.when >= event.when]
        if not since:
            out["progression"] = Evidence(f"{event.label} ({fmt_date(event.when)}) with no assessment since",
                                          (event.ref,) if event.ref else ())
    return out


def missing_assessments(ev: Evaluation) -> list[str]:
    return [e.text for e in missing_assessment_evidence(ev).values()]


@predicate("AssessmentsMissing")
def _assessments_missing(ev: Evaluation, _: str | None) -> Result:
    if _observations_unread(ev):
        return None
    return list(missing_assessment_evidence(ev).values()) or None


@predicate("AssessmentMissing", frozenset(ASSESSMENT_KINDS))
def _assessment_missing(ev: Evaluation, arg: str | None) -> Result:
    if _observations_unread(ev):
        return None
    found = missing_assessment_evidence(ev).get(arg or "")
    return [found] if found is not None else None


@predicate("DataIncomplete")
def _data_incomplete(ev: Evaluation, _: str | None) -> Result:
    return [Evidence(f"could not be read: {p}") for p in ev.problems] + unclassified_evidence(ev) or None


# -- emergencies ---------------------------------------------------------------------------------------
def _latest_date(fact: object) -> datetime | None:
    return getattr(fact, "last", None) or getattr(fact, "first", None)


def cord_compression_history(ev: Evaluation) -> Evidence | None:
    """A cord compression recorded more than 90 days ago: history for the overview, not an emergency."""
    fact = ev.facts.complications.get("cord-compression")
    when = _latest_date(fact)
    if fact is None or when is None or ev.now - when <= T.CORD_COMPRESSION_CURRENT:
        return None
    return Evidence(f"spinal cord compression recorded {fmt_date(when)} (over "
                    f"{T.CORD_COMPRESSION_CURRENT.days} days ago, no new sign: history)", tuple(fact.refs))


def overview_history(ev: Evaluation) -> list[Evidence]:
    """Past events the overview names although no card fires for them."""
    return [e for e in (cord_compression_history(ev),) if e is not None]


@predicate("CordCompressionRisk")
def _cord_compression(ev: Evaluation, _: str | None) -> Result:
    f = ev.facts
    found: list[Evidence] = []
    direct = f.complications.get("cord-compression")
    if direct is not None:
        when = _latest_date(direct)
        # Undated is read as current: the safer reading.
        if when is None or ev.now - when <= T.CORD_COMPRESSION_CURRENT:
            found.append(Evidence(f"spinal cord compression on record ({fmt_date(when)})", tuple(direct.refs)))
    bone = _site(ev, "bone")
    back = f.complications.get("back-pain")
    if bone is not None and back is not None and f.recent(_latest_date(back), f.acute_window):
        found += [bone, Evidence(f"back pain recorded {fmt_date(_latest_date(back))}", tuple(back.refs))]
    deficit = f.complications.get("neuro-deficit")
    # A new neurological deficit is read as possible cord compression with bone metastases, and also when no
    # bone or brain metastasis explains it (safer reading: imaging decides).
    if deficit is not None and f.recent(_latest_date(deficit), f.acute_window) \
            and (bone is not None or not f.has_site("brain")):
        if bone is not None and bone not in found:
            found.append(bone)
        found.append(Evidence(f"new neurological deficit recorded {fmt_date(_latest_date(deficit))}",
                              tuple(deficit.refs)))
    return found or None


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


def hypercalcaemia_symptomatic(ev: Evaluation) -> Evidence | None:
    """Vomiting / nausea recorded in the acute window alongside a raised calcium: the card treats it as
    symptomatic (clinical-rules section 5: critical when above 3.0 mmol/L or symptomatic)."""
    fact = ev.facts.complications.get("nausea")
    if fact is None or not ev.facts.recent(_latest_date(fact), ev.facts.acute_window):
        return None
    return Evidence(f"nausea / vomiting recorded {fmt_date(_latest_date(fact))}", tuple(fact.refs))


def hypercalcaemia_severe(ev: Evaluation) -> bool:
    ca = ev.calcium
    if ca is None:
        return True  # coded hypercalcaemia with no value in the window: the safer reading
    return ca.severe or hypercalcaemia_symptomatic(ev) is not None


@predicate("HypercalcaemiaSevere")
def _hypercalcaemia_severe(ev: Evaluation, arg: str | None) -> Result:
    if _hypercalcaemia(ev, arg) is None or not hypercalcaemia_severe(ev):
        return None
    symptom = hypercalcaemia_symptomatic(ev)
    return [symptom] if symptom is not None else []


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


@predicate("HasTreatment", frozenset(set(TREATMENTS) | {"brain-local", "radiotherapy-bone-recent"}))
def _has_treatment(ev: Evaluation, arg: str | None) -> Result:
    names: tuple[str, ...] = (arg or "",)
    since = None
    if arg == "brain-local":
        names = ("radiotherapy-brain", "radiotherapy-stereotactic", "neurosurgery")
    elif arg == "radiotherapy-bone-recent":
        names, since = ("radiotherapy-bone",), ev.now - T.BONE_RADIOTHERAPY_RECENT
    items = [i for n in names for i in ev.facts.treatment(n, since)]
    if not items:
        return None
    labels = ", ".join(dict.fromkeys(TREATMENT_LABELS[n] for n in names if ev.facts.treatment(n, since)))
    return [_dated(f"{labels} on record", items)]


@predicate("AllergyToClass", frozenset(DRUG_CLASSES) | {"opioid"})
def _allergy_to_class(ev: Evaluation, arg: str | None) -> Result:
    allergy = ev.facts.allergy_to(None, "strong-opioid" if arg == "opioid" else arg)
    if allergy is None:
        return None
    reaction = f", reaction: {allergy.reaction}" if allergy.reaction else ""
    return [Evidence(f"recorded allergy / intolerance: {allergy.label}{reaction}", (allergy.ref,))]


@predicate("RenalImpairmentSevere")
def _renal(ev: Evaluation, _: str | None) -> Result:
    m = ev.facts.renal_impairment_severe()
    if m is None:
        return None
    return [Evidence(f"eGFR / creatinine clearance {m.value:g} on {fmt_date(m.when)} (below "
                     f"{T.RENAL_SEVERE_BELOW:g})", (m.ref,))]


@predicate("MedicationsComplete")
def _medications_complete(ev: Evaluation, _: str | None) -> Result:
    if ev.unreadable_types & MEDICATION_TYPES or not ev.facts.medications_complete:
        return None
    return []


# -- symptoms and site-specific ----------------------------------------------------------------------
def _pain_at_least(ev: Evaluation, threshold: float) -> Evidence | None:
    pain = ev.facts.latest("pain-score", ev.facts.acute_window)
    if pain is None or pain.value < threshold:
        return None
    return Evidence(f"pain {pain.value:g}/10 on {fmt_date(pain.when)}", (pain.ref,))


_BONE_SITES = frozenset({"bone", "spine", "long-bone"})
_BONE_BODY_SITES = frozenset({"bodysite-bone", "bodysite-spine", "bodysite-long-bone"})


def bone_pain_location(ev: Evaluation) -> Evidence | None:
    """Why the pain is read as bone pain: back pain on record, a pain score with a bone / back / limb body site,
    or bone the only metastatic site."""
    back = ev.facts.complications.get("back-pain")
    if back is not None:
        return Evidence(f"back pain on record ({fmt_date(_latest_date(back))})", tuple(back.refs))
    pain = ev.facts.latest("pain-score", ev.facts.acute_window)
    if pain is not None and pain.body_sites & _BONE_BODY_SITES:
        return Evidence(f"pain score {pain.value:g}/10 recorded at a bone / back / limb site", (pain.ref,))
    if ev.facts.sites and set(ev.facts.sites) <= _BONE_SITES:
        return Evidence("bone is the only metastatic site")
    return None


@predicate("BonePain")
def _bone_pain(ev: Evaluation, _: str | None) -> Result:
    return _all(_site(ev, "bone"), _pain_at_least(ev, T.PAIN_MODERATE))


@predicate("BonePainLocated")
def _bone_pain_located(ev: Evaluation, arg: str | None) -> Result:
    return _any(bone_pain_location(ev)) if _bone_pain(ev, arg) is not None else None


@predicate("LongBoneFractureRisk")
def _long_bone(ev: Evaluation, _: str | None) -> Result:
    """Long-bone metastasis or a pathological / impending long-bone fracture. A vertebral fracture is not a
    long-bone fracture (it belongs to spinal assessment): a pathological fracture coded only on the same
    records as a vertebral fracture does not count."""
    f = ev.facts
    found = _any(_site(ev, "long-bone"), _complication(ev, "long-bone-fracture"))
    generic = f.complications.get("pathological-fracture")
    vertebral = f.complications.get("vertebral-fracture")
    if generic is not None and not (vertebral is not None and set(generic.refs) <= set(vertebral.refs)):
        found = (found or []) + [_complication(ev, "pathological-fracture")]  # type: ignore[list-item]
    return found


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
    poor = (ecog is not None and T.ecog_poor(ecog)) or (ecog is None and kps is not None and T.karnofsky_poor(kps))
    return evidence if poor else None


@predicate("GoodPerformance")
def _good_performance(ev: Evaluation, _: str | None) -> Result:
    """ECOG 0-2 (Karnofsky 60 or more): good enough for surgery or stereotactic radiotherapy of few brain
    metastases (clinical-rules section 5, brain)."""
    ecog, kps, evidence = _performance(ev)
    good = (ecog is not None and ecog <= T.ECOG_GOOD_MAX) or (ecog is None and kps is not None
                                                               and kps >= T.KARNOFSKY_GOOD_MIN)
    return evidence if good else None


@predicate("LiverSymptoms")
def _liver_symptoms(ev: Evaluation, _: str | None) -> Result:
    site = _site(ev, "liver")
    if site is None:
        return None
    pain_ev = _pain_at_least(ev, T.PAIN_MODERATE)
    symptoms = _any(_complication(ev, "jaundice"), _complication(ev, "pruritus"), _complication(ev, "nausea"),
                    pain_ev)
    return [site, *symptoms] if symptoms else None


def _spo2_low(ev: Evaluation) -> Evidence | None:
    m = ev.facts.latest("spo2", ev.facts.acute_window)
    if m is None or m.value >= T.SPO2_LOW or m.value <= 0:
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
    return _any(_site(ev, "skin"), _complication(ev, "fungating-wound"),
                _complication(ev, "uncontrolled-local-disease"))


@predicate("Fatigue")
def _fatigue(ev: Evaluation, _: str | None) -> Result:
    score = ev.facts.latest("fatigue-score", ev.facts.acute_window)
    score_ev = Evidence(f"fatigue score {score.value:g}/10 on {fmt_date(score.when)}", (score.ref,)) \
        if score is not None and score.value >= T.FATIGUE_SCORE else None
    return _any(_complication(ev, "fatigue"), score_ev)


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


@predicate("PainStepUp")
def _pain_step_up(ev: Evaluation, _: str | None) -> Result:
    """Moderate pain on step 0-1 or severe on step 0-2, by the recognised analgesics. An unclassified active
    medication leaves the step unknown: the card still fires (pain needs review) but says so, and its drafts need
    MedicationsComplete (clinical-rules section 5, v2). An unreadable medication list keeps it silent."""
    if ev.unreadable_types & MEDICATION_TYPES:
        return None
    if not ev.pain.step_up:
        return None
    return [_pain_line(ev), *unclassified_evidence(ev)]


@predicate("NoLaxativeRecognised")
def _no_laxative(ev: Evaluation, _: str | None) -> Result:
    """No active laxative among the recognised medications, with the medication list read. Unlike `not
    OnDrugClass(laxative)` it holds with an unclassified medication: the card then says 'no laxative recognised'
    and offers no draft (clinical-rules section 5, v2)."""
    if ev.unreadable_types & MEDICATION_TYPES or ev.facts.on_drug("laxative"):
        return None
    return [Evidence("no laxative recognised on the medication list"), *unclassified_evidence(ev)]


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
def performance_fell(ev: Evaluation) -> Evidence | None:
    """ECOG up (or Karnofsky down) against the previous value in the assessment window."""
    f = ev.facts
    for name, worse in (("ecog", lambda a, b: b > a), ("karnofsky", lambda a, b: b < a)):
        latest, prev = f.latest(name, f.assessment_window), f.previous(name)
        if latest is not None and prev is not None and worse(prev.value, latest.value):
            label = "ECOG" if name == "ecog" else "Karnofsky"
            return Evidence(f"{label} {prev.value:g} -> {latest.value:g} ({fmt_date(prev.when)} to "
                            f"{fmt_date(latest.when)})", (prev.ref, latest.ref))
    return None


@predicate("RehabilitationIndicated")
def _rehab(ev: Evaluation, _: str | None) -> Result:
    """Acute with ECOG 2+ (Karnofsky 60 or less); stable with ECOG 1-2 or a fall in performance status. Never a
    stable ECOG 0 patient, and not without a performance status (assessment-due asks for one)."""
    ecog, kps, evidence = _performance(ev)
    if ev.phase.name == "acute":
        if (ecog is not None and ecog >= T.ECOG_REHAB_ACUTE_MIN) or \
                (ecog is None and kps is not None and kps <= T.KARNOFSKY_REHAB_ACUTE_MAX):
            return evidence
        return None
    fell = performance_fell(ev)
    if fell is not None:
        return [*evidence, fell]
    low, high = T.ECOG_REHAB_STABLE
    if ecog is not None and low <= ecog <= high:
        return evidence
    if ecog is None and kps is not None and T.KARNOFSKY_GOOD_MIN <= kps <= T.KARNOFSKY_REHAB_STABLE_MAX:
        return evidence
    return None


@predicate("EndOfLife")
def _end_of_life(ev: Evaluation, _: str | None) -> Result:
    """Acute phase with ECOG 4 (Karnofsky 30 or less): comfort comes first (no dietitian push)."""
    if ev.phase.name != "acute":
        return None
    ecog, kps, evidence = _performance(ev)
    if (ecog is not None and ecog >= T.ECOG_HOSPICE) or (ecog is None and kps is not None
                                                           and kps <= T.KARNOFSKY_HOSPICE_MAX):
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
    if (ev.phase.name == "acute" and ecog == T.ECOG_HOSPICE) or (kps is not None and kps <= T.KARNOFSKY_HOSPICE_MAX):
        return evidence
    return None


@predicate("WeightLoss5")
def _weight_loss(ev: Evaluation, _: str | None) -> Result:
    w = ev.weight
    if w is None or w.percent < T.WEIGHT_LOSS_PERCENT:
        return None
    return [Evidence(f"weight {w.from_kg:.1f} -> {w.to_kg:.1f} kg ({w.percent:g} % loss, "
                     f"{fmt_date(w.since)} to {fmt_date(w.when)})", w.refs)]


DISTRESS_THRESHOLDS = (("distress", "distress thermometer", T.DISTRESS_THERMOMETER), ("phq9", "PHQ-9", T.PHQ9),
                       ("gad7", "GAD-7", T.GAD7), ("phq2", "PHQ-2", T.PHQ2))


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
    "HypercalcaemiaPriority": lambda ev: "stat" if hypercalcaemia_severe(ev) else "urgent",
    "BonePainPriority": lambda ev: "urgent" if bone_pain_location(ev) is not None else "routine",
    "BrainPriority": lambda ev: "routine" if _has_treatment(ev, "brain-local") else "urgent",
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
