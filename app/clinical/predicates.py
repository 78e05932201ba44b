"""The clinical predicates that PlanDefinition conditions name (through the engine's table, app.engine.predicates).

Each predicate takes the evaluation and its argument and returns None when false, or the evidence (facts with
resource references) when true, so that the card can say why it fired. What a negated condition ("not X") rests
on and tells the clinician is declared here too (`Negation`), next to the predicate it negates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from app.clinical import thresholds as T
from app.clinical.evaluation import MEDICATION_TYPES, Evaluation, Evidence
from app.clinical.facts import (
    COMPLICATION_LABELS,
    COMPLICATIONS,
    DRUG_CLASSES,
    SERVICES,
    SITE_LABELS,
    TREATMENT_LABELS,
    TREATMENTS,
    Dated,
    Measurement,
    SiteFact,
)
from app.clinical.fhirtime import fmt_date
from app.read_gaps import nothing_readable

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
    return None if fact is None else _complication_evidence(name, fact)


def _complication_evidence(name: str, fact: SiteFact) -> Evidence:
    return Evidence(f"{COMPLICATION_LABELS[name]} on record ({fmt_date(fact.first)})", tuple(fact.refs))


def _newest(items: Iterable[Dated]) -> Dated | None:
    """The item with the latest date (the first of equals); undated items never win."""
    dated = [(i.when, i) for i in items if i.when is not None]
    return max(dated, key=lambda pair: pair[0])[1] if dated else None


def _all(*parts: Evidence | None) -> Findings:
    return [p for p in parts if p is not None] if all(p is not None for p in parts) else None


def _any(*parts: Evidence | None) -> Findings:
    found = [p for p in parts if p is not None]
    return found or None


# -- phase ---------------------------------------------------------------------------------------------
def phase_signals(ev: Evaluation) -> list[Evidence]:
    """The acute-phase signals (A1-A6) found, each under its code."""
    return [Evidence(f"{e.code}: {e.text}", e.refs) for e in ev.phase.evidence]


def always(ev: Evaluation, _: str | None) -> Findings:
    return []


def acute_phase(ev: Evaluation, _: str | None) -> Findings:
    return phase_signals(ev) if ev.phase.name == "acute" else None


def stable_phase(ev: Evaluation, _: str | None) -> Findings:
    return [Evidence(f"stable phase: no acute signal in {ev.facts.acute_window.days} days, assessed in "
                     f"{ev.facts.assessment_window.days} days")] \
        if ev.phase.name == "stable" else None


def unknown_phase(ev: Evaluation, _: str | None) -> Findings:
    return [Evidence(f"phase unknown: no symptom or performance assessment in {ev.facts.assessment_window.days} "
                     "days")] \
        if ev.phase.name == "unknown" else None


def stable_or_unknown_phase(ev: Evaluation, arg: str | None) -> Findings:
    return stable_phase(ev, arg) or unknown_phase(ev, arg)


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
    return _newest(events)


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


def assessments_missing(ev: Evaluation, _: str | None) -> Findings:
    if _observations_unread(ev):
        return None
    return list(missing_assessment_evidence(ev).values()) or None


def assessment_missing(ev: Evaluation, arg: str | None) -> Findings:
    if _observations_unread(ev):
        return None
    found = missing_assessment_evidence(ev).get(arg or "")
    return [found] if found is not None else None


def data_incomplete(ev: Evaluation, _: str | None) -> Findings:
    return [Evidence(f"could not be read: {p}") for p in ev.problems] + unclassified_evidence(ev) or None


# -- emergencies ---------------------------------------------------------------------------------------
def _latest_date(fact: SiteFact | None) -> datetime | None:
    return None if fact is None else fact.last or fact.first


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


def cord_compression_risk(ev: Evaluation, _: str | None) -> Findings:
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


def hypercalcaemia(ev: Evaluation, _: str | None) -> Findings:
    ca = ev.calcium
    if ca is not None and ca.high:
        return [Evidence(f"{ca.describe()} on {fmt_date(ca.when)}", ca.refs)]
    if ca is None:
        fact = ev.facts.complications.get("hypercalcaemia")
        if fact is not None and (fact.first is None or ev.facts.recent(fact.first, ev.facts.acute_window)):
            return [_complication_evidence("hypercalcaemia", fact)]
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


def severe_hypercalcaemia(ev: Evaluation, arg: str | None) -> Findings:
    if hypercalcaemia(ev, arg) is None or not hypercalcaemia_severe(ev):
        return None
    symptom = hypercalcaemia_symptomatic(ev)
    return [symptom] if symptom is not None else []


def bowel_obstruction(ev: Evaluation, _: str | None) -> Findings:
    return _any(_complication(ev, "bowel-obstruction"))


# -- sites, complications, drugs, services -----------------------------------------------------------
SITE_ARGS = frozenset(set(SITE_LABELS) | {"lung-or-pleura"})


def has_site(ev: Evaluation, arg: str | None) -> Findings:
    if arg == "lung-or-pleura":
        return _any(_site(ev, "lung"), _site(ev, "pleura"))
    return _any(_site(ev, arg or ""))


COMPLICATION_ARGS = frozenset(set(COMPLICATIONS) | {"fracture"})


def has_complication(ev: Evaluation, arg: str | None) -> Findings:
    name = "pathological-fracture" if arg == "fracture" else (arg or "")
    return _any(_complication(ev, name))


DRUG_ARGS = frozenset(set(DRUG_CLASSES) | {"opioid"})


def drug_evidence(ev: Evaluation, cls: str) -> Evidence | None:
    classes = ("weak-opioid", "strong-opioid") if cls == "opioid" else (cls,)
    uses = [u for c in classes for u in ev.facts.drugs.get(c, [])]
    if not uses:
        return None
    names = ", ".join(dict.fromkeys(u.name for u in uses))
    return Evidence(f"active {cls.replace('-', ' ')}: {names}", tuple(u.ref for u in uses))


def on_drug_class(ev: Evaluation, arg: str | None) -> Findings:
    return _any(drug_evidence(ev, arg or ""))


SERVICE_ARGS = frozenset(SERVICES)


def has_service(ev: Evaluation, arg: str | None) -> Findings:
    names = ("palliative-care", "hospice") if arg == "palliative-care" else (arg or "",)
    items = [i for n in names for i in ev.facts.services.get(n, [])]
    return [_dated(f"{(arg or '').replace('-', ' ')} already on record", items)] if items else None


TREATMENT_ARGS = frozenset(set(TREATMENTS) | {"brain-local", "radiotherapy-bone-recent"})


def has_treatment(ev: Evaluation, arg: str | None) -> Findings:
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


def allergy_to_class(ev: Evaluation, arg: str | None) -> Findings:
    allergy = ev.facts.allergy_to(None, "strong-opioid" if arg == "opioid" else arg)
    if allergy is None:
        return None
    reaction = f", reaction: {allergy.reaction}" if allergy.reaction else ""
    return [Evidence(f"recorded allergy / intolerance: {allergy.label}{reaction}", (allergy.ref,))]


def renal_impairment_severe(ev: Evaluation, _: str | None) -> Findings:
    m = ev.facts.renal_impairment_severe()
    if m is None:
        return None
    return [Evidence(f"eGFR {m.value:g} {m.unit} on {fmt_date(m.when)} (below {T.RENAL_SEVERE_BELOW:g} in the last "
                     f"{T.RENAL_WINDOW.days} days)", (m.ref,))]


def medications_complete(ev: Evaluation, _: str | None) -> Findings:
    if ev.unreadable_types & MEDICATION_TYPES or not ev.facts.medications_complete:
        return None
    return []


# -- symptoms and site-specific ----------------------------------------------------------------------
def moderate_pain(ev: Evaluation) -> Measurement | None:
    """The latest pain score of the acute window when it is moderate or worse."""
    pain = ev.facts.latest("pain-score", ev.facts.acute_window)
    return pain if pain is not None and pain.value >= T.PAIN_MODERATE else None


def _moderate_pain(ev: Evaluation) -> Evidence | None:
    pain = moderate_pain(ev)
    return None if pain is None else Evidence(f"pain {pain.value:g}/10 on {fmt_date(pain.when)}", (pain.ref,))


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


def bone_pain(ev: Evaluation, _: str | None) -> Findings:
    return _all(_site(ev, "bone"), _moderate_pain(ev))


def bone_pain_located(ev: Evaluation, arg: str | None) -> Findings:
    return _any(bone_pain_location(ev)) if bone_pain(ev, arg) is not None else None


def long_bone_fracture_risk(ev: Evaluation, _: str | None) -> Findings:
    """Long-bone metastasis or a pathological / impending long-bone fracture. A vertebral fracture is not a
    long-bone fracture (it belongs to spinal assessment): a pathological fracture coded only on the same
    records as a vertebral fracture does not count."""
    f = ev.facts
    found = _any(_site(ev, "long-bone"), _complication(ev, "long-bone-fracture"))
    generic = f.complications.get("pathological-fracture")
    vertebral = f.complications.get("vertebral-fracture")
    if generic is not None and not (vertebral is not None and set(generic.refs) <= set(vertebral.refs)):
        found = (found or []) + [_complication_evidence("pathological-fracture", generic)]
    return found


def brain_symptomatic(ev: Evaluation, _: str | None) -> Findings:
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


def poor_performance(ev: Evaluation, _: str | None) -> Findings:
    ecog, kps, evidence = _performance(ev)
    poor = (ecog is not None and T.ecog_poor(ecog)) or (ecog is None and kps is not None and T.karnofsky_poor(kps))
    return evidence if poor else None


def good_performance(ev: Evaluation, _: str | None) -> Findings:
    """ECOG 0-2 (Karnofsky 60 or more): good enough for surgery or stereotactic radiotherapy of few brain
    metastases (clinical-rules section 5, brain)."""
    ecog, kps, evidence = _performance(ev)
    good = (ecog is not None and ecog <= T.ECOG_GOOD_MAX) or (ecog is None and kps is not None
                                                               and kps >= T.KARNOFSKY_GOOD_MIN)
    return evidence if good else None


def liver_symptoms(ev: Evaluation, _: str | None) -> Findings:
    site = _site(ev, "liver")
    if site is None:
        return None
    symptoms = _any(_complication(ev, "jaundice"), _complication(ev, "pruritus"), _complication(ev, "nausea"),
                    _moderate_pain(ev))
    return [site, *symptoms] if symptoms else None


def hypoxaemia(ev: Evaluation) -> Measurement | None:
    """The latest SpO2 of the acute window when it is below the hypoxaemia cut-off (a zero is no reading)."""
    m = ev.facts.latest("spo2", ev.facts.acute_window)
    return m if m is not None and 0 < m.value < T.SPO2_LOW else None


def _hypoxaemia(ev: Evaluation) -> Evidence | None:
    m = hypoxaemia(ev)
    return None if m is None else Evidence(f"SpO2 {m.value:g} % on {fmt_date(m.when)}", (m.ref,))


def spo2_low(ev: Evaluation, _: str | None) -> Findings:
    return _any(_hypoxaemia(ev))


def breathlessness(ev: Evaluation, _: str | None) -> Findings:
    site = _any(_site(ev, "lung"), _site(ev, "pleura"))
    if site is None:
        return None
    signs = _any(_complication(ev, "dyspnoea"), _complication(ev, "pleural-effusion"), _hypoxaemia(ev))
    return [*site, *signs] if signs else None


def skin_disease(ev: Evaluation, _: str | None) -> Findings:
    return _any(_site(ev, "skin"), _complication(ev, "fungating-wound"),
                _complication(ev, "uncontrolled-local-disease"))


def fatigue_score_high(ev: Evaluation) -> Measurement | None:
    """The latest 0-10 fatigue score of the acute window when it reaches the cut-off."""
    m = ev.facts.latest("fatigue-score", ev.facts.acute_window)
    return m if m is not None and m.value >= T.FATIGUE_SCORE else None


def fatigue(ev: Evaluation, _: str | None) -> Findings:
    score = fatigue_score_high(ev)
    score_ev = None if score is None else Evidence(f"fatigue score {score.value:g}/10 on {fmt_date(score.when)}",
                                                   (score.ref,))
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


def pain_step_up(ev: Evaluation, _: str | None) -> Findings:
    """Moderate pain on step 0-1 or severe on step 0-2, by the recognised analgesics. An unclassified active
    medication leaves the step unknown: the card still fires (pain needs review) but says so, and its drafts need
    MedicationsComplete (clinical-rules section 5, v2). An unreadable medication list keeps it silent."""
    if ev.unreadable_types & MEDICATION_TYPES:
        return None
    if not ev.pain.step_up:
        return None
    return [_pain_line(ev), *unclassified_evidence(ev)]


def no_laxative_recognised(ev: Evaluation, _: str | None) -> Findings:
    """No active laxative among the recognised medications, with the medication list read. Unlike `not
    OnDrugClass(laxative)` it holds with an unclassified medication: the card then says 'no laxative recognised'
    and offers no draft (clinical-rules section 5, v2)."""
    if ev.unreadable_types & MEDICATION_TYPES or ev.facts.on_drug("laxative"):
        return None
    return [Evidence("no laxative recognised on the medication list"), *unclassified_evidence(ev)]


NEXT_STEP_ARGS = frozenset({"non-opioid", "weak-opioid", "strong-opioid"})


def next_step(ev: Evaluation, arg: str | None) -> Findings:
    target = ev.pain.target_step
    if target is None:
        return None
    if arg == "non-opioid":
        # The ladder keeps a non-opioid at every step: offer it when none is active.
        return None if ev.facts.on_drug("non-opioid-analgesic") else []
    wanted = {"weak-opioid": 2, "strong-opioid": 3}[arg or ""]
    return [] if target == wanted else None


def pain_uncontrolled_on_strong_opioid(ev: Evaluation, _: str | None) -> Findings:
    return [_pain_line(ev)] if ev.pain.uncontrolled_on_strong_opioid else None


# -- referrals -------------------------------------------------------------------------------------------
def performance_fell(ev: Evaluation) -> Evidence | None:
    """ECOG up (or Karnofsky down) against the previous value in the assessment window."""
    f = ev.facts
    checks: tuple[tuple[str, Callable[[float, float], bool]], ...] = (
        ("ecog", lambda a, b: b > a), ("karnofsky", lambda a, b: b < a))
    for name, worse in checks:
        latest, prev = f.latest(name, f.assessment_window), f.previous(name)
        if latest is not None and prev is not None and worse(prev.value, latest.value):
            label = "ECOG" if name == "ecog" else "Karnofsky"
            return Evidence(f"{label} {prev.value:g} -> {latest.value:g} ({fmt_date(prev.when)} to "
                            f"{fmt_date(latest.when)})", (prev.ref, latest.ref))
    return None


def rehabilitation_indicated(ev: Evaluation, _: str | None) -> Findings:
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


def end_of_life(ev: Evaluation, _: str | None) -> Findings:
    """Acute phase with ECOG 4 (Karnofsky 30 or less): comfort comes first (no dietitian push)."""
    if ev.phase.name != "acute":
        return None
    ecog, kps, evidence = _performance(ev)
    if (ecog is not None and ecog >= T.ECOG_HOSPICE) or (ecog is None and kps is not None
                                                           and kps <= T.KARNOFSKY_HOSPICE_MAX):
        return evidence
    return None


def social_work_indicated(ev: Evaluation, _: str | None) -> Findings:
    found = phase_signals(ev) if ev.phase.name == "acute" else []
    concern = _complication(ev, "financial-concern")
    if concern is not None:
        found.append(concern)
    return found or None


def hospice_indicated(ev: Evaluation, _: str | None) -> Findings:
    ecog, kps, evidence = _performance(ev)
    if (ev.phase.name == "acute" and ecog == T.ECOG_HOSPICE) or (kps is not None and kps <= T.KARNOFSKY_HOSPICE_MAX):
        return evidence
    return None


def weight_loss_5(ev: Evaluation, _: str | None) -> Findings:
    w = ev.weight
    if w is None or w.percent < T.WEIGHT_LOSS_PERCENT:
        return None
    return [Evidence(f"weight {w.from_kg:.1f} -> {w.to_kg:.1f} kg ({w.percent:g} % loss, "
                     f"{fmt_date(w.since)} to {fmt_date(w.when)})", w.refs)]


DISTRESS_THRESHOLDS = (("distress", "distress thermometer", T.DISTRESS_THERMOMETER), ("phq9", "PHQ-9", T.PHQ9),
                       ("gad7", "GAD-7", T.GAD7), ("phq2", "PHQ-2", T.PHQ2))


@dataclass(frozen=True, slots=True)
class Screen:
    """A distress screen at or above its cut-off."""

    name: str          # observation name: distress, phq9, gad7, phq2
    label: str
    measurement: Measurement


def elevated_screens(ev: Evaluation) -> list[Screen]:
    """The latest distress screens of the acute window at or above their cut-offs."""
    found: list[Screen] = []
    for name, label, threshold in DISTRESS_THRESHOLDS:
        m = ev.facts.latest(name, ev.facts.acute_window)
        if m is not None and m.value >= threshold:
            found.append(Screen(name, label, m))
    return found


def distress_elevated(ev: Evaluation, _: str | None) -> Findings:
    return [Evidence(f"{s.label} {s.measurement.value:g} on {fmt_date(s.measurement.when)}", (s.measurement.ref,))
            for s in elevated_screens(ev)] or None


def spiritual_concern(ev: Evaluation, _: str | None) -> Findings:
    return _any(_complication(ev, "spiritual-concern"))


# -- advance care planning -------------------------------------------------------------------------------
def acp_on_record(ev: Evaluation, _: str | None) -> Findings:
    items = ev.facts.acp_items()
    return [_dated("advance care planning on record", items)] if items else None


def acp_code_status_and_place_of_death(ev: Evaluation, _: str | None) -> Findings:
    code_status = ev.facts.acp.get("code-status")
    place = ev.facts.acp.get("place-of-death")
    if not code_status or not place:
        return None
    return [_dated("code status on record", code_status), _dated("preferred place of death on record", place)]


def newest_acp(ev: Evaluation) -> Dated | None:
    return _newest(ev.facts.acp_items())


def acp_stale(ev: Evaluation, _: str | None) -> Findings:
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


# -- the overview and scope -------------------------------------------------------------------------------
_ASSESSMENT_LABELS = {"pain-score": "pain", "ecog": "ECOG", "karnofsky": "Karnofsky", "distress": "distress",
                      "phq9": "PHQ-9", "phq2": "PHQ-2", "gad7": "GAD-7"}
# the resource types that hold the acute-phase signals (A1-A6) and the assessments
_PHASE_TYPES = frozenset({"Condition", "Observation", "Encounter"})


def phase_basis(ev: Evaluation) -> list[Evidence]:
    """Why a phase is stable (assessments without acute signals) or unknown (none in the window)."""
    window = ev.facts.assessment_window
    found = []
    for name, label in _ASSESSMENT_LABELS.items():
        m = ev.facts.latest(name, window)
        if m is not None:
            found.append(Evidence(f"latest {label} {m.value:g} on {fmt_date(m.when)}", (m.ref,)))
    unread = sorted(ev.unreadable_types & _PHASE_TYPES)
    if unread:
        # "no acute-phase signal", "no assessment" are absences: not claimed from a record read in part
        return [Evidence(f"phase judged on part of the record: {', '.join(unread)} could not be read in full, "
                         "an acute-phase signal or assessment may be missing"), *found]
    if not found:
        return [Evidence(f"no symptom or performance assessment in the last {window.days} days")]
    return [Evidence(f"no acute-phase signal in the last {ev.facts.acute_window.days} days"), *found]


def scope_unreadable(ev: Evaluation) -> bool:
    """Scope cannot be ruled out when the Patient or the Conditions could not be read (in full)."""
    return bool({"Condition", "Patient"} & ev.unreadable_types)


# -- priorities (PlanDefinition dynamicValue) -------------------------------------------------------------
def phase_priority(ev: Evaluation) -> str:
    return "urgent" if ev.phase.name == "acute" else "routine"


def hypercalcaemia_priority(ev: Evaluation) -> str:
    return "stat" if hypercalcaemia_severe(ev) else "urgent"


def bone_pain_priority(ev: Evaluation) -> str:
    return "urgent" if bone_pain_location(ev) is not None else "routine"


def brain_priority(ev: Evaluation) -> str:
    return "routine" if has_treatment(ev, "brain-local") else "urgent"


def liver_priority(ev: Evaluation) -> str:
    return "urgent" if ev.facts.has_complication("jaundice") else "routine"


def read_gap_priority(ev: Evaluation) -> str:
    # Nothing checked at all (no Patient or no Conditions) must not look like a quiet record: a warning.
    return "urgent" if nothing_readable(ev.gaps) else "routine"


# -- the names PlanDefinition conditions and dynamicValues use ---------------------------------------------
@dataclass(frozen=True, slots=True)
class Named:
    """A predicate under its PlanDefinition name: the function, the arguments it accepts (None: takes none) and
    what its negation rests on (None: "not X" needs no reading guard and names no absence)."""

    fn: Callable[[Evaluation, str | None], Findings]
    args: frozenset[str] | None = None
    negation: Negation | None = None


# A new rule's predicate is a function above and a line here (and its documentation in the predicates Library).
PREDICATES: dict[str, Named] = {
    "Always": Named(always),
    "IsAcutePhase": Named(acute_phase),
    "IsStablePhase": Named(stable_phase),
    "IsUnknownPhase": Named(unknown_phase),
    "IsStableOrUnknownPhase": Named(stable_or_unknown_phase),
    "AssessmentsMissing": Named(assessments_missing),
    "AssessmentMissing": Named(assessment_missing, frozenset(ASSESSMENT_KINDS)),
    "DataIncomplete": Named(data_incomplete),
    "CordCompressionRisk": Named(cord_compression_risk, negation=NO_CONDITION),
    "Hypercalcaemia": Named(hypercalcaemia),
    "HypercalcaemiaSevere": Named(severe_hypercalcaemia),
    "BowelObstruction": Named(bowel_obstruction, negation=NO_CONDITION),
    "HasSite": Named(has_site, SITE_ARGS),
    "HasComplication": Named(has_complication, COMPLICATION_ARGS, NO_COMPLICATION),
    "OnDrugClass": Named(on_drug_class, DRUG_ARGS, NOT_ON_DRUG_CLASS),
    "HasService": Named(has_service, SERVICE_ARGS, NO_SERVICE),
    "HasTreatment": Named(has_treatment, TREATMENT_ARGS, NO_TREATMENT),
    "AllergyToClass": Named(allergy_to_class, DRUG_ARGS, NO_ALLERGY),
    "RenalImpairmentSevere": Named(renal_impairment_severe, negation=NO_OBSERVATION),
    "MedicationsComplete": Named(medications_complete),
    "BonePain": Named(bone_pain),
    "BonePainLocated": Named(bone_pain_located),
    "LongBoneFractureRisk": Named(long_bone_fracture_risk),
    "BrainSymptomatic": Named(brain_symptomatic),
    "PoorPerformance": Named(poor_performance, negation=NO_OBSERVATION),
    "GoodPerformance": Named(good_performance),
    "LiverSymptoms": Named(liver_symptoms),
    "SpO2Low": Named(spo2_low),
    "Breathlessness": Named(breathlessness),
    "SkinDisease": Named(skin_disease),
    "Fatigue": Named(fatigue),
    "PainStepUp": Named(pain_step_up),
    "NoLaxativeRecognised": Named(no_laxative_recognised),
    "NextStep": Named(next_step, NEXT_STEP_ARGS),
    "PainUncontrolledOnStrongOpioid": Named(pain_uncontrolled_on_strong_opioid),
    "RehabilitationIndicated": Named(rehabilitation_indicated),
    "EndOfLife": Named(end_of_life, negation=NO_OBSERVATION),
    "SocialWorkIndicated": Named(social_work_indicated),
    "HospiceIndicated": Named(hospice_indicated),
    "WeightLoss5": Named(weight_loss_5),
    "DistressElevated": Named(distress_elevated),
    "SpiritualConcern": Named(spiritual_concern),
    "AcpOnRecord": Named(acp_on_record, negation=NO_ACP),
    "AcpCodeStatusAndPlaceOfDeath": Named(acp_code_status_and_place_of_death,
                                         negation=NO_CODE_STATUS_OR_PLACE_OF_DEATH),
    "AcpStale": Named(acp_stale),
}

PRIORITIES: dict[str, Callable[[Evaluation], str]] = {
    "PhasePriority": phase_priority,
    "HypercalcaemiaPriority": hypercalcaemia_priority,
    "BonePainPriority": bone_pain_priority,
    "BrainPriority": brain_priority,
    "LiverPriority": liver_priority,
    "ReadGapPriority": read_gap_priority,
}
