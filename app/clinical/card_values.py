"""The values card templates ({key} in PlanDefinition titles and descriptions) may use, as the clinician reads them.

Each takes the evaluation and returns text; the numbers in the text come from the evaluation and from
app.clinical.thresholds, never written twice. The engine renders them into cards (app.engine.context).
"""

from __future__ import annotations

from collections.abc import Callable

from app.clinical import thresholds as T
from app.clinical.evaluation import Evaluation
from app.clinical.facts import COMPLICATION_LABELS, SITE_LABELS, TREATMENT_LABELS
from app.clinical.fhirtime import fmt_date
from app.clinical.gaps import gap_lines
from app.clinical.pain import STEP_NAMES
from app.clinical.predicates.acp import newest_acp
from app.clinical.predicates.emergencies import hypercalcaemia_severe
from app.clinical.predicates.phase import missing_assessment_evidence, missing_assessments
from app.clinical.predicates.referrals import elevated_screens
from app.clinical.predicates.symptoms import bone_pain_location, fatigue_score_high, hypoxaemia, moderate_pain


def metastatic_sites(ev: Evaluation) -> str:
    """The metastatic sites as the cards name them (bone with its spine / long-bone detail)."""
    sites = ev.facts.sites
    names: list[str] = []
    for site in SITE_LABELS:
        if site not in sites:
            continue
        if site == "bone":
            detail = [SITE_LABELS[s] for s in ("spine", "long-bone") if s in sites]
            names.append(f"bone ({', '.join(detail)})" if detail else "bone")
        elif site not in ("spine", "long-bone"):
            names.append(SITE_LABELS[site])
    if not names and ev.facts.staging_m1:
        return "M1 (sites not coded)"
    return ", ".join(names) or "site not coded"


def _pain_score(ev: Evaluation) -> str:
    return f"{ev.pain.score:g}/10" if ev.pain.score is not None else "not recorded"


def _perf(ev: Evaluation) -> str:
    f = ev.facts
    ecog = f.latest("ecog", f.assessment_window)
    if ecog is not None:
        return f"ECOG {ecog.value:g} ({fmt_date(ecog.when)})"
    kps = f.latest("karnofsky", f.assessment_window)
    if kps is not None:
        return f"Karnofsky {kps.value:g} ({fmt_date(kps.when)})"
    return "performance status not recorded"


def _complications(ev: Evaluation, names: tuple[str, ...]) -> str:
    found = [COMPLICATION_LABELS[n] for n in names if ev.facts.has_complication(n)]
    return ", ".join(found) or "none recorded"


def _lung(ev: Evaluation) -> str:
    parts = [COMPLICATION_LABELS[n] for n in ("dyspnoea", "pleural-effusion") if ev.facts.has_complication(n)]
    spo2 = hypoxaemia(ev)
    if spo2 is not None:
        parts.append(f"SpO2 {spo2.value:g} %")
    return ", ".join(parts) or "none recorded"


def _liver(ev: Evaluation) -> str:
    parts = [COMPLICATION_LABELS[n] for n in ("jaundice", "pruritus", "nausea") if ev.facts.has_complication(n)]
    pain = moderate_pain(ev)
    if pain is not None:
        # Named as liver pain only when the record locates it there; the facts carry no pain site.
        parts.append(f"pain {pain.value:g}/10 (site not recorded)")
    return ", ".join(parts) or "none recorded"


def _none_recognised(ev: Evaluation, what: str) -> str:
    # With an unclassified medication on the list, "no X" would be an absence claim the record does not support.
    return f"no {what}" if ev.facts.medications_complete else f"no recognised {what}"


def _acp_items(ev: Evaluation) -> str:
    return ", ".join(dict.fromkeys(i.label for i in ev.facts.acp_items())) or "none on record"


def _acp_missing(ev: Evaluation) -> str:
    missing = [label for kind, label in (("code-status", "code status"), ("place-of-death", "preferred place of death"))
               if not ev.facts.acp.get(kind)]
    return " and ".join(missing) or "nothing"


def _weight(ev: Evaluation) -> str:
    w = ev.weight
    return f"{w.percent:g} % since {fmt_date(w.since)}" if w else "no weight trend"


def _distress(ev: Evaluation) -> str:
    return ", ".join(f"{s.label} {s.measurement.value:g}" for s in elevated_screens(ev)) or "no elevated score"


def _spo2(ev: Evaluation) -> str:
    m = ev.facts.latest("spo2", ev.facts.acute_window)
    return f"SpO2 {m.value:g} %" if m else "SpO2 not recorded"


def _bone_first(ev: Evaluation) -> str:
    fact = ev.facts.sites.get("bone")
    return fmt_date(fact.first) if fact is not None and fact.first else "date not recorded"


def _bma_checks(ev: Evaluation) -> str:
    f = ev.facts
    parts: list[str] = []
    renal = f.renal_impairment_severe()
    if renal is not None:
        parts.append(f"eGFR {renal.value:g} on {fmt_date(renal.when)} is below {T.RENAL_SEVERE_BELOW:g}: no draft; "
                     "seek advice on the "
                     "agent (zoledronic acid needs dose adjustment or avoidance)")
    allergy = f.allergy_to(None, "bone-modifying-agent")
    if allergy is not None:
        parts.append(f"recorded allergy / intolerance: {allergy.label}: no draft; the prescriber chooses")
    return "; ".join(parts) or "no blocking finding on record"


def _bone_pain_where(ev: Evaluation) -> str:
    where = bone_pain_location(ev)
    return f"pain located in bone ({where.text})" if where else "pain site not recorded"


_SINGLE_FRACTION = f"{T.BONE_PAIN_SINGLE_FRACTION_GY:g} Gy"


def _bone_pain_title(ev: Evaluation) -> str:
    if bone_pain_location(ev) is not None:
        return (f"Bone metastases, bone pain {_pain_score(ev)}: refer for single {_SINGLE_FRACTION} fraction "
                "palliative radiotherapy")
    return (f"Pain {_pain_score(ev)} with bone metastases: if it arises from them, single {_SINGLE_FRACTION} "
            "fraction radiotherapy")


def _brain_treatments(ev: Evaluation) -> str:
    done = [f"{TREATMENT_LABELS[n]} ({fmt_date(max((d.when for d in items if d.when), default=None))})"
            for n in ("neurosurgery", "radiotherapy-stereotactic", "radiotherapy-brain")
            if (items := ev.facts.treatment(n))]
    return ", ".join(done) or "no local treatment on record"


def _brain_treated(ev: Evaluation) -> bool:
    return any(ev.facts.treatment(n) for n in ("neurosurgery", "radiotherapy-stereotactic", "radiotherapy-brain"))


def _brain_plan(ev: Evaluation) -> str:
    if _brain_treated(ev):
        return f"treated ({_brain_treatments(ev)}): follow up, rehabilitation, steroid review"
    return "steroid if symptomatic; choose local treatment by performance status"


def _rehab_plan(ev: Evaluation) -> str:
    if ev.phase.name == "acute":
        return "refer for PT/OT and a home safety check"
    return "refer to PT/OT to keep strength and function"


def _rehab_detail(ev: Evaluation) -> str:
    if ev.phase.name == "acute":
        return ("Acute phase: physiotherapy and occupational therapy for home safety and accessibility, energy "
                "conservation, positioning and assistive devices.")
    return ("Stable phase: exercise to keep strength and performance status, with a physiotherapist, occupational "
            "therapist or trainer.")


def _distress_next(ev: Evaluation) -> str:
    if _phq2_only(ev):
        return "PHQ-2 positive: complete a PHQ-9 or a clinical assessment first, then refer if confirmed"
    return "refer if the patient agrees"


def _phq2_only(ev: Evaluation) -> bool:
    return [s.name for s in elevated_screens(ev)] == ["phq2"]


def _distress_step(ev: Evaluation) -> str:
    if _phq2_only(ev):
        return "complete a PHQ-9 first; psycho-oncology / mental health referral if confirmed"
    return "refer to psycho-oncology / mental health; chaplain if spiritual concerns"


def _distress_step_basic(ev: Evaluation) -> str:
    if _phq2_only(ev):
        return "complete a PHQ-9 first; support and counselling if confirmed"
    return "assess and support; counselling and peer support"


def _calcium_plan(ev: Evaluation) -> str:
    if hypercalcaemia_severe(ev):
        return "severe or symptomatic: rehydrate, treat in hospital, recheck"
    return "mild: fluids, review calcium-raising drugs, recheck"


def _fatigue(ev: Evaluation) -> str:
    parts = []
    if ev.facts.has_complication("fatigue"):
        parts.append("fatigue on record")
    m = fatigue_score_high(ev)
    if m is not None:
        parts.append(f"fatigue score {m.value:g}/10")
    return ", ".join(parts) or "fatigue"


def _long_bone(ev: Evaluation) -> str:
    parts = []
    if ev.facts.has_site("long-bone"):
        parts.append("long-bone metastasis")
    for name in ("long-bone-fracture", "pathological-fracture"):
        if ev.facts.has_complication(name):
            parts.append(COMPLICATION_LABELS[name])
    return ", ".join(dict.fromkeys(parts)) or "long-bone disease"


def _medication_note(ev: Evaluation) -> str:
    unclassified = ev.facts.unclassified_medications
    if not unclassified:
        return "Every active medication was recognised."
    names = ", ".join(dict.fromkeys(d.label for d in unclassified if d.label)) or "not named"
    return (f"Active medication not recognised ({names}): the ladder step and laxative cover cannot be confirmed, "
            "so no drug is drafted; check the list.")


_MISSING_SHORT = {"pain": "pain score", "distress": "distress screen", "performance": "performance status",
                  "phase": "phase (no assessment)", "progression": "reassessment after progression"}


def _missing_short(ev: Evaluation) -> str:
    return ", ".join(_MISSING_SHORT[k] for k in missing_assessment_evidence(ev)) or "none"


def _step_up_action(ev: Evaluation) -> str:
    if ev.facts.unclassified_medications:
        return f"step unknown (unrecognised medication), consider {ev.pain.next_short()}"
    return f"step up to {ev.pain.next_short()}"


def _laxative_absence(ev: Evaluation) -> str:
    return "no laxative recognised" if ev.facts.unclassified_medications else "no laxative on record"


def _mmol(value: float) -> str:
    """A calcium in mmol/L as the guidelines write it, with one decimal at least (3.0, 2.65)."""
    text = f"{value:g}"
    return text if "." in text else f"{text}.0"


def _fixed(text: str) -> Callable[[Evaluation], str]:
    return lambda _ev: text


# The cut-offs the cards name, as thresholds.py sets them: card text writes these keys, never the numbers
# (tests/test_card_thresholds.py).
THRESHOLD_VALUES: dict[str, Callable[[Evaluation], str]] = {
    "spo2_low": _fixed(f"{T.SPO2_LOW:g}"),
    "renal_severe_below": _fixed(f"{T.RENAL_SEVERE_BELOW:g}"),
    "hypercalcaemia_mmol": _fixed(_mmol(T.HYPERCALCAEMIA["mmol/L"])),
    "hypercalcaemia_severe_mmol": _fixed(_mmol(T.HYPERCALCAEMIA_SEVERE["mmol/L"])),
    "hypercalcaemia_severe_mgdl": _fixed(f"{T.HYPERCALCAEMIA_SEVERE['mg/dL']:g}"),
    "phq2_positive": _fixed(f"{T.PHQ2:g}"),
    "ecog_good": _fixed(f"0-{T.ECOG_GOOD_MAX:g}"),
    "ecog_poor": _fixed(f"{T.ECOG_POOR_MIN:g}-{T.ECOG_POOR_MAX:g}"),
    "single_fraction_dose": _fixed(_SINGLE_FRACTION),
}

CARD_VALUES: dict[str, Callable[[Evaluation], str]] = {
    **THRESHOLD_VALUES,
    "phase": lambda ev: ev.phase.name,
    "phase_cap": lambda ev: ev.phase.name.capitalize(),
    "phase_evidence": lambda ev: "; ".join(e.text for e in ev.phase.evidence) or "no acute signal",
    "sites": metastatic_sites,
    "pain_score": _pain_score,
    "pain_date": lambda ev: fmt_date(ev.pain.when),
    "pain_severity": lambda ev: ev.pain.severity,
    "pain_step": lambda ev: f"step {ev.pain.step} ({STEP_NAMES[ev.pain.step]})",
    "analgesics": lambda ev: ", ".join(ev.facts.drug_names("non-opioid-analgesic", "weak-opioid",
                                                            "strong-opioid")) or _none_recognised(ev, "analgesic"),
    "next_step": lambda ev: ev.pain.next_label(),
    "next_step_short": lambda ev: ev.pain.next_short(),
    "perf": _perf,
    "calcium": lambda ev: ev.calcium.describe() if ev.calcium else
    f"calcium not measured in {ev.facts.acute_window.days} days",
    "calcium_severity": lambda ev: "severe" if ev.calcium and ev.calcium.severe else "mild",
    "distress": _distress,
    "weight_loss": _weight,
    "spo2": _spo2,
    "opioids": lambda ev: ", ".join(ev.facts.drug_names("weak-opioid", "strong-opioid"))
    or _none_recognised(ev, "opioid"),
    "anticonvulsants": lambda ev: ", ".join(ev.facts.drug_names("anticonvulsant"))
    or _none_recognised(ev, "anticonvulsant"),
    "corticosteroids": lambda ev: ", ".join(ev.facts.drug_names("corticosteroid")) or "none active",
    "acp_date": lambda ev: fmt_date(n.when) if (n := newest_acp(ev)) else "never",
    "acp_items": _acp_items,
    "acp_missing": _acp_missing,
    "missing_assessments": lambda ev: "; ".join(missing_assessments(ev)) or "none",
    "unreadable": lambda ev: "; ".join(
        [*gap_lines(ev.gaps), *(f"the drug class of '{d.label}'" for d in ev.facts.unclassified_medications)])
    or "nothing",
    "brain_symptoms": lambda ev: _complications(ev, ("seizure", "cerebral-oedema")),
    "liver_symptoms": _liver,
    "lung_symptoms": _lung,
    "skin_findings": lambda ev: ", ".join(
        x for x in (("skin / chest wall metastasis" if ev.facts.has_site("skin") else ""),
                    ("fungating wound" if ev.facts.has_complication("fungating-wound") else "")) if x)
    or "none recorded",
    "acute_window": lambda ev: f"{ev.facts.acute_window.days} days",
    "assessment_window": lambda ev: f"{ev.facts.assessment_window.days} days",
    "acute_days": lambda ev: str(ev.facts.acute_window.days),
    "assessment_days": lambda ev: str(ev.facts.assessment_window.days),
    "bone_first": _bone_first,
    "bma_checks": _bma_checks,
    "bone_pain_where": _bone_pain_where,
    "bone_pain_title": _bone_pain_title,
    "brain_plan": _brain_plan,
    "brain_treatments": _brain_treatments,
    "rehab_plan": _rehab_plan,
    "rehab_detail": _rehab_detail,
    "distress_next": _distress_next,
    "distress_step": _distress_step,
    "distress_step_basic": _distress_step_basic,
    "calcium_plan": _calcium_plan,
    "fatigue": _fatigue,
    "long_bone": _long_bone,
    "medication_note": _medication_note,
    "laxative_absence": _laxative_absence,
    "missing_short": _missing_short,
    "step_up_action": _step_up_action,
    "complications": lambda ev: ", ".join(COMPLICATION_LABELS[n] for n in ev.facts.complications) or "none",
}
