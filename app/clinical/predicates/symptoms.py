"""Symptoms and site-specific findings: bone pain and fractures, brain, liver, lung, skin, performance, fatigue."""

from __future__ import annotations

from app.clinical import thresholds as T
from app.clinical.evaluation import Evaluation, Evidence
from app.clinical.facts import Measurement
from app.clinical.fhirtime import fmt_date
from app.clinical.predicates.base import (
    Findings,
    all_of,
    any_of,
    complication_evidence,
    complication_on_record,
    latest_date,
    site_evidence,
)


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
        return Evidence(f"back pain on record ({fmt_date(latest_date(back))})", tuple(back.refs))
    pain = ev.facts.latest("pain-score", ev.facts.acute_window)
    if pain is not None and pain.body_sites & _BONE_BODY_SITES:
        return Evidence(f"pain score {pain.value:g}/10 recorded at a bone / back / limb site", (pain.ref,))
    if ev.facts.sites and set(ev.facts.sites) <= _BONE_SITES:
        return Evidence("bone is the only metastatic site")
    return None


def bone_pain(ev: Evaluation, _: str | None) -> Findings:
    return all_of(site_evidence(ev, "bone"), _moderate_pain(ev))


def bone_pain_located(ev: Evaluation, arg: str | None) -> Findings:
    return any_of(bone_pain_location(ev)) if bone_pain(ev, arg) is not None else None


def long_bone_fracture_risk(ev: Evaluation, _: str | None) -> Findings:
    """Long-bone metastasis or a pathological / impending long-bone fracture. A vertebral fracture is not a
    long-bone fracture (it belongs to spinal assessment): a pathological fracture coded only on the same
    records as a vertebral fracture does not count."""
    f = ev.facts
    found = any_of(site_evidence(ev, "long-bone"), complication_on_record(ev, "long-bone-fracture"))
    generic = f.complications.get("pathological-fracture")
    vertebral = f.complications.get("vertebral-fracture")
    if generic is not None and not (vertebral is not None and set(generic.refs) <= set(vertebral.refs)):
        found = (found or []) + [complication_evidence("pathological-fracture", generic)]
    return found


def brain_symptomatic(ev: Evaluation, _: str | None) -> Findings:
    site = site_evidence(ev, "brain")
    symptoms = any_of(complication_on_record(ev, "cerebral-oedema"), complication_on_record(ev, "seizure"))
    return [site, *symptoms] if site is not None and symptoms else None


def performance(ev: Evaluation) -> tuple[float | None, float | None, list[Evidence]]:
    window = ev.facts.assessment_window
    ecog = ev.facts.latest("ecog", window)
    kps = ev.facts.latest("karnofsky", window)
    evidence = [Evidence(f"ECOG {ecog.value:g} on {fmt_date(ecog.when)}", (ecog.ref,))] if ecog else []
    if kps:
        evidence.append(Evidence(f"Karnofsky {kps.value:g} on {fmt_date(kps.when)}", (kps.ref,)))
    return (ecog.value if ecog else None, kps.value if kps else None, evidence)


def poor_performance(ev: Evaluation, _: str | None) -> Findings:
    ecog, kps, evidence = performance(ev)
    poor = (ecog is not None and T.ecog_poor(ecog)) or (ecog is None and kps is not None and T.karnofsky_poor(kps))
    return evidence if poor else None


def good_performance(ev: Evaluation, _: str | None) -> Findings:
    """ECOG 0-2 (Karnofsky 60 or more): good enough for surgery or stereotactic radiotherapy of few brain
    metastases (clinical-rules section 5, brain)."""
    ecog, kps, evidence = performance(ev)
    good = (ecog is not None and ecog <= T.ECOG_GOOD_MAX) or (ecog is None and kps is not None
                                                               and kps >= T.KARNOFSKY_GOOD_MIN)
    return evidence if good else None


def liver_symptoms(ev: Evaluation, _: str | None) -> Findings:
    site = site_evidence(ev, "liver")
    if site is None:
        return None
    symptoms = any_of(*(complication_on_record(ev, n) for n in ("jaundice", "pruritus", "nausea")), _moderate_pain(ev))
    return [site, *symptoms] if symptoms else None


def hypoxaemia(ev: Evaluation) -> Measurement | None:
    """The latest SpO2 of the acute window when it is below the hypoxaemia cut-off (a zero is no reading)."""
    m = ev.facts.latest("spo2", ev.facts.acute_window)
    return m if m is not None and 0 < m.value < T.SPO2_LOW else None


def _hypoxaemia(ev: Evaluation) -> Evidence | None:
    m = hypoxaemia(ev)
    return None if m is None else Evidence(f"SpO2 {m.value:g} % on {fmt_date(m.when)}", (m.ref,))


def spo2_low(ev: Evaluation, _: str | None) -> Findings:
    return any_of(_hypoxaemia(ev))


def breathlessness(ev: Evaluation, _: str | None) -> Findings:
    site = any_of(site_evidence(ev, "lung"), site_evidence(ev, "pleura"))
    if site is None:
        return None
    signs = any_of(complication_on_record(ev, "dyspnoea"), complication_on_record(ev, "pleural-effusion"),
                   _hypoxaemia(ev))
    return [*site, *signs] if signs else None


def skin_disease(ev: Evaluation, _: str | None) -> Findings:
    return any_of(site_evidence(ev, "skin"), complication_on_record(ev, "fungating-wound"),
                complication_on_record(ev, "uncontrolled-local-disease"))


def fatigue_score_high(ev: Evaluation) -> Measurement | None:
    """The latest 0-10 fatigue score of the acute window when it reaches the cut-off."""
    m = ev.facts.latest("fatigue-score", ev.facts.acute_window)
    return m if m is not None and m.value >= T.FATIGUE_SCORE else None


def fatigue(ev: Evaluation, _: str | None) -> Findings:
    score = fatigue_score_high(ev)
    score_ev = None if score is None else Evidence(f"fatigue score {score.value:g}/10 on {fmt_date(score.when)}",
                                                   (score.ref,))
    return any_of(complication_on_record(ev, "fatigue"), score_ev)
