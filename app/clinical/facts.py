"""One pass over a patient's FHIR resources (raw JSON dicts) producing the typed facts the rules use.

Only resources whose codes fall in the project's value sets are kept; everything else is skipped cheaply.
Every fact remembers the resources it came from ("Condition/abc") so that cards can say why they fired.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from app.clinical.fhirtime import parse_fhir_datetime
from app.clinical.gaps import NO_DRUG_CLASS, NO_RESOURCE_TYPE, NOT_A_RESOURCE, UNREADABLE_STRUCTURE, ReadGap
from app.clinical.medications import classify_medication
from app.clinical.thresholds import RENAL_SEVERE_BELOW, RENAL_WINDOW
from terminology.fhir_json import CodeableConceptJson, JsonObject, JsonValue

SITES: tuple[str, ...] = (
    "bone", "spine", "long-bone", "brain", "liver", "lung", "pleura", "skin", "peritoneum-bowel", "other",
)
_SITE_RANK: dict[str, int] = {site: i for i, site in enumerate(SITES)}
SITE_LABELS: dict[str, str] = {
    "bone": "bone", "spine": "spine", "long-bone": "long bone", "brain": "brain", "liver": "liver",
    "lung": "lung", "pleura": "pleura", "skin": "skin / chest wall", "peritoneum-bowel": "peritoneum / bowel",
    "other": "other site",
}
# Spine and long-bone metastases are bone metastases too.
_SITE_IMPLIES: dict[str, tuple[str, ...]] = {"spine": ("bone",), "long-bone": ("bone",)}

COMPLICATIONS: tuple[str, ...] = (
    "cord-compression", "hypercalcaemia", "pathological-fracture", "bowel-obstruction", "seizure",
    "cerebral-oedema", "pleural-effusion", "jaundice", "pruritus", "nausea", "lymphoedema", "fungating-wound",
    "dyspnoea", "back-pain", "financial-concern", "spiritual-concern", "fatigue", "neuro-deficit",
    "uncontrolled-local-disease", "long-bone-fracture", "vertebral-fracture",
)
COMPLICATION_LABELS: dict[str, str] = {
    "cord-compression": "spinal cord compression", "hypercalcaemia": "hypercalcaemia",
    "pathological-fracture": "pathological fracture", "bowel-obstruction": "bowel obstruction",
    "seizure": "seizure", "cerebral-oedema": "cerebral oedema", "pleural-effusion": "pleural effusion",
    "jaundice": "jaundice", "pruritus": "pruritus", "nausea": "nausea", "lymphoedema": "lymphoedema",
    "fungating-wound": "fungating wound", "dyspnoea": "dyspnoea", "back-pain": "back pain",
    "financial-concern": "financial / practical concern", "spiritual-concern": "spiritual concern",
    "fatigue": "fatigue", "neuro-deficit": "neurological deficit",
    "uncontrolled-local-disease": "uncontrolled local disease", "long-bone-fracture": "long-bone fracture",
    "vertebral-fracture": "vertebral fracture",
}
DRUG_CLASSES: tuple[str, ...] = (
    "non-opioid-analgesic", "weak-opioid", "strong-opioid", "laxative", "corticosteroid", "anticonvulsant",
    "bone-modifying-agent", "antiemetic", "antidepressant",
)
SERVICES: tuple[str, ...] = (
    "palliative-care", "hospice", "pain", "physiotherapy", "occupational-therapy", "social-work", "dietitian",
    "mental-health", "chaplaincy", "wound-care", "orthopaedics", "radiotherapy", "oncology", "key-worker",
    "lymphoedema",
)
ACP_LABELS: dict[str, str] = {
    "document": "advance directive", "proxy": "healthcare proxy", "code-status": "code status",
    "place-of-death": "preferred place of death", "goals-of-care": "goals of care",
}
TREATMENTS: tuple[str, ...] = (
    "radiotherapy-bone", "radiotherapy-brain", "radiotherapy-stereotactic", "neurosurgery", "orthopaedic-fixation",
    "thoracentesis", "pleurodesis", "biliary-stent",
)
TREATMENT_LABELS: dict[str, str] = {
    "radiotherapy-bone": "palliative radiotherapy to bone", "radiotherapy-brain": "brain radiotherapy",
    "radiotherapy-stereotactic": "stereotactic radiotherapy", "neurosurgery": "neurosurgery",
    "orthopaedic-fixation": "orthopaedic fixation", "thoracentesis": "thoracentesis", "pleurodesis": "pleurodesis",
    "biliary-stent": "biliary stent",
}

_OPIOID_CLASSES = frozenset({"weak-opioid", "strong-opioid"})
_OPIOID_CLASS_WORDS = frozenset({"opioid", "opioids", "opiate", "opiates", "narcotic", "narcotics"})
_WORD = re.compile(r"[a-z]+")
# Word starts that place a generic radiotherapy procedure at a site ("RT to L2 vertebra", "whole brain RT").
_BONE_WORDS = re.compile(r"\b(bone|spin|vertebr|femur|femor|humer|pelvi|ribs?\b|sacr|hip\b|thoracic spine|lumbar)")
_BRAIN_WORDS = re.compile(r"\b(brain|cranial|cerebr|intracranial)")
_INACTIVE_CLINICAL = {"inactive", "resolved", "remission"}
_EXCLUDED_VERIFICATION = {"refuted", "entered-in-error"}
_OBS_EXCLUDED_STATUS = {"entered-in-error", "cancelled", "registered"}
_UNPLANNED_CLASSES = {"EMER", "IMP", "ACUTE", "NONAC"}
_SERVICE_REQUEST_ON_RECORD = {"active", "completed"}
# "Recent" and "not in the future" allow a day for clocks and time zones.
_ONE_DAY = timedelta(days=1)


class TerminologyLike(Protocol):
    def concepts_of_codeable(self, cc: CodeableConceptJson | None) -> set[str]: ...
    def concepts_of_text(self, text: JsonValue) -> set[str]: ...
    def concepts(self, system: JsonValue, code: JsonValue) -> frozenset[str]: ...
    def concepts_of_medication(self, cc: CodeableConceptJson | None) -> set[str]: ...
    def ingredients_of_text(self, text: JsonValue) -> set[str]: ...
    def ingredients_of_code(self, system: JsonValue, code: JsonValue) -> frozenset[str]: ...
    def concepts_of_phrases(self, text: JsonValue) -> set[str]: ...
    def recognises_medication_text(self, text: JsonValue) -> bool: ...


@dataclass(frozen=True, slots=True)
class Dated:
    """A fact seen in one resource, with the instant it applies to."""

    ref: str
    when: datetime | None
    label: str = ""


@dataclass(frozen=True, slots=True)
class Measurement:
    value: float
    unit: str
    when: datetime
    ref: str
    # bodySite concepts of the Observation (e.g. "bodysite-bone"): where a pain score locates the pain
    body_sites: frozenset[str] = frozenset()


@dataclass(slots=True)
class SiteFact:
    site: str
    first: datetime | None = None
    refs: list[str] = field(default_factory=list)
    last: datetime | None = None
    # Membership set beside the ordered list: a patient with thousands of Conditions must stay linear.
    _seen: set[str] = field(default_factory=set, repr=False, compare=False)

    def add(self, ref: str, when: datetime | None) -> None:
        if ref not in self._seen:
            self._seen.add(ref)
            self.refs.append(ref)
        if when is not None:
            if self.first is None or when < self.first:
                self.first = when
            if self.last is None or when > self.last:
                self.last = when


@dataclass(slots=True)
class DrugUse:
    drug_class: str
    name: str
    ref: str
    when: datetime | None
    ingredients: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Allergy:
    """An active, not refuted AllergyIntolerance, reduced to what a draft check needs."""

    ref: str
    when: datetime | None
    label: str
    ingredients: frozenset[str]
    classes: frozenset[str]
    reaction: str = ""
    criticality: str = ""


@dataclass(slots=True)
class PatientFacts:
    patient_id: str
    now: datetime
    acute_window: timedelta
    assessment_window: timedelta
    breast_primary: list[Dated] = field(default_factory=list)
    metastasis: list[Dated] = field(default_factory=list)
    staging_m1: list[Dated] = field(default_factory=list)
    sites: dict[str, SiteFact] = field(default_factory=dict)
    complications: dict[str, SiteFact] = field(default_factory=dict)
    observations: dict[str, list[Measurement]] = field(default_factory=dict)
    progressing: list[Dated] = field(default_factory=list)
    drugs: dict[str, list[DrugUse]] = field(default_factory=dict)
    services: dict[str, list[Dated]] = field(default_factory=dict)
    acp: dict[str, list[Dated]] = field(default_factory=dict)
    unplanned_encounters: list[Dated] = field(default_factory=list)
    allergies: list[Allergy] = field(default_factory=list)
    unclassified_medications: list[Dated] = field(default_factory=list)
    treatments: dict[str, list[Dated]] = field(default_factory=dict)
    gaps: list[ReadGap] = field(default_factory=list)   # what the fact pass could not read or classify
    medications_readable: bool = True

    # -- queries used by phase, pain and predicates ------------------------------------------------------
    @property
    def in_scope(self) -> bool:
        """Section 1 of the rules: breast primary and metastatic disease."""
        return bool(self.breast_primary) and (bool(self.metastasis) or bool(self.staging_m1))

    def recent(self, when: datetime | None, window: timedelta) -> bool:
        return when is not None and self.now - window <= when <= self.now + _ONE_DAY

    def series(self, name: str) -> list[Measurement]:
        """Measurements of one kind, oldest first, none from the future."""
        return self.observations.get(name, [])

    def latest(self, name: str, window: timedelta | None = None) -> Measurement | None:
        values = self.series(name)
        if not values:
            return None
        last = values[-1]
        if window is not None and not self.recent(last.when, window):
            return None
        return last

    def previous(self, name: str) -> Measurement | None:
        """The measurement before the latest one, within the assessment look-back."""
        values = self.series(name)
        if len(values) < 2:
            return None
        prev = values[-2]
        return prev if self.recent(prev.when, self.assessment_window) else None

    def has_site(self, site: str) -> bool:
        return site in self.sites

    def has_complication(self, name: str) -> bool:
        return name in self.complications

    def on_drug(self, drug_class: str) -> bool:
        return bool(self.drugs.get(drug_class))

    def drug_names(self, *classes: str) -> list[str]:
        names: list[str] = []
        for cls in classes:
            for use in self.drugs.get(cls, []):
                if use.name not in names:
                    names.append(use.name)
        return names

    def acp_items(self) -> list[Dated]:
        return [item for items in self.acp.values() for item in items]

    @property
    def medications_complete(self) -> bool:
        """True when every active medication was placed in a class and the medication resources were readable."""
        return self.medications_readable and not self.unclassified_medications

    def allergy_to(self, ingredient: str | None, drug_class: str | None) -> Allergy | None:
        """The first recorded allergy / intolerance to this ingredient or drug class (opioid classes share one)."""
        wanted_ingredient = ingredient.strip().lower() if ingredient else None
        for allergy in self.allergies:
            if wanted_ingredient and wanted_ingredient in allergy.ingredients:
                return allergy
            if drug_class and (drug_class in allergy.classes
                               or (drug_class in _OPIOID_CLASSES and "opioid" in allergy.classes)):
                return allergy
        return None

    def renal_impairment_severe(self) -> Measurement | None:
        """The latest eGFR or creatinine clearance within RENAL_WINDOW, when it is below RENAL_SEVERE_BELOW
        mL/min(/1.73 m2) (severe renal impairment, rules section 2)."""
        candidates = [m for m in (self.latest("egfr", RENAL_WINDOW), self.latest("creatinine-clearance", RENAL_WINDOW))
                      if m is not None]
        if not candidates:
            return None
        latest = max(candidates, key=lambda m: m.when)
        return latest if latest.value < RENAL_SEVERE_BELOW else None

    def treatment(self, name: str, since: datetime | None = None) -> list[Dated]:
        """Procedures / service requests of one treatment kind, optionally only those dated on or after ``since``."""
        items = self.treatments.get(name, [])
        if since is None:
            return list(items)
        return [d for d in items if d.when is not None and d.when >= since]


def _ref(resource: dict[str, Any]) -> str:
    rid = resource.get("id")
    rtype = resource.get("resourceType", "Resource")
    return f"{rtype}/{rid}" if isinstance(rid, str) and rid else f"{rtype}/(no id)"


def _first_time(resource: dict[str, Any], *fields: str) -> datetime | None:
    for name in fields:
        value = resource.get(name)
        if isinstance(value, dict):  # Period
            when = parse_fhir_datetime(value.get("start")) or parse_fhir_datetime(value.get("end"))
        else:
            when = parse_fhir_datetime(value)
        if when is not None:
            return when
    return None


def _codes(cc: JsonValue) -> list[str]:
    if not isinstance(cc, dict):
        return []
    codings = cc.get("coding")
    if not isinstance(codings, list):
        return []
    return [code for c in codings if isinstance(c, dict) and isinstance(code := c.get("code"), str)]


def _status_code(cc: JsonValue) -> str | None:
    codes = _codes(cc)
    return codes[0] if codes else None


def _references_other_patient(resource: dict[str, Any], patient_id: str) -> bool:
    for key in ("subject", "patient", "for"):
        ref = resource.get(key)
        if isinstance(ref, dict):
            target = ref.get("reference")
            if isinstance(target, str) and target.startswith("Patient/"):
                return target.split("/", 2)[1] != patient_id
    return False


def _display_of(cc: JsonValue) -> str:
    if not isinstance(cc, dict):
        return ""
    text = cc.get("text")
    if isinstance(text, str) and text:
        return text
    for coding in cc.get("coding") or []:
        display = coding.get("display") if isinstance(coding, dict) else None
        if isinstance(display, str):
            return display
    return ""


_ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
_MCODE_PRIMARY = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-primary-cancer-condition"


def _icdo3_breast_topography(cc: JsonValue) -> bool:
    # ICD-O-3 topography C50.0-C50.9 is the breast by the structure of the classification.
    if not isinstance(cc, dict):
        return False
    for coding in cc.get("coding") or ():
        if isinstance(coding, dict) and coding.get("system") == _ICDO3:
            code = str(coding.get("code") or "").replace(".", "").upper()
            if code.startswith("C50"):
                return True
    return False


def _is_breast_primary_by_site(r: dict[str, Any], code: JsonValue, body_concepts: set[str]) -> bool:
    """ICD-O-3 malignant morphology (behaviour /3) or an mCODE PrimaryCancerCondition, with a breast site."""
    breast_site = "bodysite-breast" in body_concepts or any(_icdo3_breast_topography(cc)
                                                            for cc in r.get("bodySite") or [])
    if not breast_site:
        return False
    profiles = (r.get("meta") or {}).get("profile") if isinstance(r.get("meta"), dict) else None
    if isinstance(profiles, list) and any(isinstance(p, str) and p.startswith(_MCODE_PRIMARY) for p in profiles):
        return True
    if isinstance(code, dict):
        for coding in code.get("coding") or ():
            if isinstance(coding, dict) and coding.get("system") == _ICDO3 and \
                    str(coding.get("code") or "").strip().endswith("/3"):
                return True
    return False


class _FactBuilder:
    def __init__(self, patient_id: str, now: datetime, terminology: TerminologyLike,
                 acute_window: timedelta, assessment_window: timedelta) -> None:
        self.t = terminology
        # The builder reads fixed paths and never recurses into resource content, so deep nesting inside a
        # prefetch resource is harmless here; orjson refuses more than 1024 levels at parse time.
        self.facts = PatientFacts(patient_id=patient_id, now=now, acute_window=acute_window,
                                  assessment_window=assessment_window)
        self.medications: dict[str, dict[str, Any]] = {}
        self.pending_meds: list[tuple[dict[str, Any], datetime | None]] = []
        self.raw_obs: dict[str, list[tuple[Measurement, dict[str, Any]]]] = {}
        self.history: list[Dated] = []
        self._drug_refs: set[tuple[str, str]] = set()
        self.gap_counts: dict[tuple[str | None, str, str], int] = {}  # (resource type, cause, kind) -> resources

    def _gap(self, resource_type: str | None, cause: str, kind: str = "incomplete") -> None:
        # An entry the pass could not read leaves its type incomplete (the rest of it was read).
        key = (resource_type, cause, kind)
        self.gap_counts[key] = self.gap_counts.get(key, 0) + 1

    # -- dispatch --------------------------------------------------------------------------------------
    def add(self, resource: JsonObject) -> None:
        if not isinstance(resource, dict):
            self._gap(None, NOT_A_RESOURCE)
            return
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str):
            self._gap(None, NO_RESOURCE_TYPE)
            return
        handler = self._handlers.get(rtype)
        if handler is None:
            return
        if _references_other_patient(resource, self.facts.patient_id):
            return
        try:
            handler(self, resource)
        except (TypeError, ValueError, AttributeError, KeyError):
            # A malformed resource must not take the whole hook down; it is reported on data-incomplete.
            self._gap(rtype, UNREADABLE_STRUCTURE)

    # -- Condition -------------------------------------------------------------------------------------
    def _condition(self, r: dict[str, Any]) -> None:
        if _status_code(r.get("verificationStatus")) in _EXCLUDED_VERIFICATION:
            return
        code = r.get("code")
        concepts = self.t.concepts_of_codeable(code)
        if _status_code(r.get("clinicalStatus")) in _INACTIVE_CLINICAL:
            # A history code says the cancer is in the past, so a "resolved" status does not withdraw it.
            if "history-breast-cancer" in concepts:
                self.history.append(Dated(_ref(r), _first_time(r, "onsetDateTime", "onsetPeriod", "recordedDate"),
                                          _display_of(code) or "personal history of breast cancer"))
            return
        body_concepts: set[str] = set()
        for cc in r.get("bodySite") or []:
            body_concepts |= self.t.concepts_of_codeable(cc)
        if _is_breast_primary_by_site(r, code, body_concepts):
            concepts.add("breast-primary")
        if not concepts:
            return
        ref = _ref(r)
        when = _first_time(r, "onsetDateTime", "onsetPeriod", "recordedDate")
        label = _display_of(code)
        if "breast-primary" in concepts:
            self.facts.breast_primary.append(Dated(ref, when, label))
            for stage in r.get("stage") or ():
                # Condition.stage.summary (US Core / older mCODE) valued stage IV or M1 is staging evidence too.
                if isinstance(stage, dict) and self.t.concepts_of_codeable(stage.get("summary")) & {
                        "value-stage-iv", "value-m1"}:
                    self.facts.staging_m1.append(Dated(ref, when, "stage IV"))
        if "history-breast-cancer" in concepts:
            self.history.append(Dated(ref, when, label or "personal history of breast cancer"))
        sites = {c.removeprefix("metastasis-") for c in concepts if c.startswith("metastasis-")}
        # Regional nodes are N stage (rules v2 section 1): a generic secondary code on a regional node is not M1.
        if sites and ("regional-node" in concepts or "bodysite-regional-node" in body_concepts) and \
                sites <= {"any", "other"}:
            sites = set()
        if sites:
            self.facts.metastasis.append(Dated(ref, when, label))
            sites.discard("any")
            body_sites = {c.removeprefix("bodysite-") for c in body_concepts if c.startswith("bodysite-")}
            body_sites.discard("breast")
            body_sites.discard("regional-node")
            # In the fixed order of SITES, not a set's: the overview lists sites in the order they were added, and
            # a set's order changes with the process's hash seed (two workers would word one card differently).
            for site in sorted(sites | body_sites, key=lambda s: (_SITE_RANK.get(s, len(SITES)), s)):
                self._add_site(site, ref, when)
            if not sites and not body_sites:
                self._add_site("other", ref, when)
        for concept in concepts:
            if concept in COMPLICATIONS:
                fact = self.facts.complications.get(concept)
                if fact is None:
                    fact = self.facts.complications[concept] = SiteFact(concept)
                fact.add(ref, when)
        if "acp-code-status" in concepts:
            # Z66 / "not for resuscitation" recorded as a Condition is a code status on record (rules v2).
            self._acp({"acp-code-status"}, ref, when)

    def _add_site(self, site: str, ref: str, when: datetime | None) -> None:
        if site not in SITE_LABELS:
            return
        self.facts.sites.setdefault(site, SiteFact(site)).add(ref, when)
        for implied in _SITE_IMPLIES.get(site, ()):
            self.facts.sites.setdefault(implied, SiteFact(implied)).add(ref, when)

    # -- Observation -----------------------------------------------------------------------------------
    def _observation(self, r: dict[str, Any]) -> None:
        if r.get("status") in _OBS_EXCLUDED_STATUS:
            return
        concepts = self.t.concepts_of_codeable(r.get("code"))
        if not concepts:
            return
        ref = _ref(r)
        when = _first_time(r, "effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued")
        if "obs-tnm-m" in concepts or "obs-stage-group" in concepts:
            values = self.t.concepts_of_codeable(r.get("valueCodeableConcept"))
            if "value-m1" in values or "value-stage-iv" in values:
                label = "M1 (distant metastasis)" if "value-m1" in values else "stage IV"
                self.facts.staging_m1.append(Dated(ref, when, label))
            return
        if "obs-disease-status" in concepts:
            if "value-progressing" in self.t.concepts_of_codeable(r.get("valueCodeableConcept")):
                self.facts.progressing.append(Dated(ref, when, "disease progressing"))
            return
        if "acp-code-status" in concepts or "acp-place-of-death" in concepts or "acp-goals-of-care" in concepts:
            self._acp(concepts, ref, when or _first_time(r, "meta"))
        if when is None or when > self.facts.now + _ONE_DAY:
            return
        for concept in concepts:
            if concept.startswith("obs-"):
                self._measurement(concept.removeprefix("obs-"), r, ref, when)

    def _measurement(self, name: str, r: dict[str, Any], ref: str, when: datetime) -> None:
        value: float | None = None
        unit = ""
        if isinstance(r.get("valueInteger"), int) and not isinstance(r.get("valueInteger"), bool):
            value = float(r["valueInteger"])
        elif isinstance(r.get("valueQuantity"), dict):
            q = r["valueQuantity"]
            raw = q.get("value")
            if isinstance(raw, int | float) and not isinstance(raw, bool):
                value = float(raw)
                unit = str(q.get("code") or q.get("unit") or "")
        elif isinstance(r.get("valueDecimal"), int | float):
            value = float(r["valueDecimal"])
        if value is None or value != value or abs(value) > 1e6:
            return
        sites: frozenset[str] = frozenset()
        if name == "pain-score" and isinstance(r.get("bodySite"), dict):
            sites = frozenset(c for c in self.t.concepts_of_codeable(r["bodySite"]) if c.startswith("bodysite-"))
        m = Measurement(value, unit, when, ref, sites)
        self.raw_obs.setdefault(name, []).append((m, r))

    # -- medications -----------------------------------------------------------------------------------
    def _medication(self, r: dict[str, Any]) -> None:
        rid = r.get("id")
        if isinstance(rid, str):
            self.medications[f"Medication/{rid}"] = r
            self.medications[f"#{rid}"] = r

    def _medication_request(self, r: dict[str, Any]) -> None:
        if r.get("status") != "active" or r.get("intent") == "proposal":
            return
        self._medication_use(r, "authoredOn")

    def _medication_statement(self, r: dict[str, Any]) -> None:
        if r.get("status") != "active":
            return
        self._medication_use(r, "effectiveDateTime", "effectivePeriod", "dateAsserted")

    def _medication_use(self, r: dict[str, Any], *time_fields: str) -> None:
        # Classified in finish(): a medicationReference may point to a Medication later in the bundle.
        self.pending_meds.append((r, _first_time(r, *time_fields)))

    def _classify_use(self, r: dict[str, Any], when: datetime | None) -> None:
        ref = _ref(r)
        med = classify_medication(r, self.t, bundle_medications=self.medications)
        if not med.classified:
            self.facts.unclassified_medications.append(Dated(ref, when, med.name or "a medication without a name"))
            self._gap(r["resourceType"], NO_DRUG_CLASS, "unclassified")
            return
        short = _short_drug_name(med.name)
        for cls in med.classes:
            if (cls, ref) in self._drug_refs:
                continue
            self._drug_refs.add((cls, ref))
            self.facts.drugs.setdefault(cls, []).append(DrugUse(cls, short or cls, ref, when, med.ingredients))

    # -- allergies -------------------------------------------------------------------------------------
    def _allergy(self, r: dict[str, Any]) -> None:
        if _status_code(r.get("verificationStatus")) in _EXCLUDED_VERIFICATION:
            return
        if _status_code(r.get("clinicalStatus")) in _INACTIVE_CLINICAL:
            return
        cc = r.get("code")
        med = classify_medication({"resourceType": "Medication", "code": cc}, self.t)
        classes = set(med.classes)
        words = set(_WORD.findall(" ".join(t for t in [_display_of(cc), med.name] if t).lower()))
        if words & _OPIOID_CLASS_WORDS:
            # An allergy recorded against the class ("Opioids") covers every opioid; one to morphine does not.
            classes |= {"opioid", *_OPIOID_CLASSES}
        reaction = ""
        for item in r.get("reaction") or ():
            if isinstance(item, dict):
                for manifestation in item.get("manifestation") or ():
                    reaction = reaction or _display_of(manifestation)
        criticality = r.get("criticality")
        if not isinstance(criticality, str):
            criticality = ""
        label = _display_of(cc) or med.name
        if not label:
            return
        self.facts.allergies.append(Allergy(_ref(r), _first_time(r, "onsetDateTime", "recordedDate"), label,
                                            med.ingredients, frozenset(classes), reaction, criticality))

    # -- services, encounters, care teams --------------------------------------------------------------
    def _service_request(self, r: dict[str, Any]) -> None:
        concepts = self.t.concepts_of_codeable(r.get("code"))
        for cc in r.get("performerType") and [r["performerType"]] or []:
            concepts = concepts | self.t.concepts_of_codeable(cc)
        ref = _ref(r)
        when = _first_time(r, "authoredOn", "occurrenceDateTime", "occurrencePeriod")
        if "acp-document" in concepts and r.get("status") == "completed":
            self._acp(concepts, ref, when)
        if r.get("status") not in _SERVICE_REQUEST_ON_RECORD:
            return
        if "acp-code-status" in concepts:
            self._acp({"acp-code-status"}, ref, when)  # a DNR order
        self._services(concepts, ref, when)
        self._treatments(r, concepts, ref, when)

    def _services(self, concepts: set[str], ref: str, when: datetime | None) -> None:
        for concept in concepts:
            if concept.startswith("service-"):
                items = self.facts.services.setdefault(concept.removeprefix("service-"), [])
                items.append(Dated(ref, when))

    def _encounter(self, r: dict[str, Any]) -> None:
        if r.get("status") in {"entered-in-error", "cancelled", "planned"}:
            return
        ref = _ref(r)
        when = _first_time(r, "period")
        klass = r.get("class")
        if isinstance(klass, dict) and klass.get("code") in _UNPLANNED_CLASSES and self.facts.recent(
                when, self.facts.acute_window):
            self.facts.unplanned_encounters.append(Dated(ref, when, str(klass.get("code"))))
        if not self.facts.recent(when, self.facts.assessment_window):
            return
        concepts: set[str] = set()
        for key in ("serviceType",):
            concepts |= self.t.concepts_of_codeable(r.get(key))
        for cc in r.get("type") or []:
            concepts |= self.t.concepts_of_codeable(cc)
        self._services(concepts, ref, when)

    def _care_team(self, r: dict[str, Any]) -> None:
        if r.get("status") not in (None, "active", "proposed"):
            return
        ref = _ref(r)
        concepts: set[str] = set()
        for participant in r.get("participant") or []:
            if isinstance(participant, dict):
                for cc in participant.get("role") or []:
                    concepts |= self.t.concepts_of_codeable(cc)
        for cc in r.get("category") or []:
            concepts |= self.t.concepts_of_codeable(cc)
        self._services(concepts, ref, _first_time(r, "period"))

    # -- advance care planning -------------------------------------------------------------------------
    def _acp(self, concepts: set[str], ref: str, when: datetime | None) -> None:
        for concept in concepts:
            if concept.startswith("acp-"):
                kind = concept.removeprefix("acp-")
                self.facts.acp.setdefault(kind, []).append(Dated(ref, when, ACP_LABELS.get(kind, kind)))

    def _document_reference(self, r: dict[str, Any]) -> None:
        if r.get("status") not in (None, "current"):
            return
        concepts = self.t.concepts_of_codeable(r.get("type"))
        for cc in r.get("category") or []:
            concepts |= self.t.concepts_of_codeable(cc)
        self._acp(concepts, _ref(r), _first_time(r, "date"))

    def _consent(self, r: dict[str, Any]) -> None:
        if r.get("status") not in ("active",):
            return
        concepts = self.t.concepts_of_codeable(r.get("scope"))
        for cc in r.get("category") or []:
            concepts |= self.t.concepts_of_codeable(cc)
        self._acp(concepts, _ref(r), _first_time(r, "dateTime"))

    def _goal(self, r: dict[str, Any]) -> None:
        if r.get("lifecycleStatus") in {"cancelled", "entered-in-error", "rejected"}:
            return
        concepts = self.t.concepts_of_codeable(r.get("description"))
        for cc in r.get("category") or []:
            concepts |= self.t.concepts_of_codeable(cc)
        self._acp(concepts, _ref(r), _first_time(r, "startDate", "statusDate"))

    def _procedure(self, r: dict[str, Any]) -> None:
        status = r.get("status")
        if status not in ("completed", "in-progress"):
            return
        concepts = self.t.concepts_of_codeable(r.get("code"))
        ref = _ref(r)
        when = _first_time(r, "performedDateTime", "performedPeriod")
        if status == "completed":
            self._acp(concepts, ref, when)
        self._treatments(r, concepts, ref, when)

    def _treatments(self, r: dict[str, Any], concepts: set[str], ref: str, when: datetime | None) -> None:
        """Treatments on record (rules v2 section 2) from codes, the procedure's words and its body site."""
        code = r.get("code")
        found = {c.removeprefix("treatment-") for c in concepts if c.startswith("treatment-")}
        words = [code.get("text")] if isinstance(code, dict) else []
        if isinstance(code, dict):
            words += [c.get("display") for c in code.get("coding") or () if isinstance(c, dict)]
        for text in words:
            found |= {c.removeprefix("treatment-") for c in self.t.concepts_of_phrases(text)
                      if c.startswith("treatment-")}
        if not found:
            return
        if "radiotherapy" in found:
            found.discard("radiotherapy")
            sites: set[str] = set()
            for cc in r.get("bodySite") or []:
                sites |= self.t.concepts_of_codeable(cc)
            site_words = " ".join(t for t in words if isinstance(t, str)).lower()
            if sites & {"bodysite-bone", "bodysite-spine", "bodysite-long-bone"} or \
                    _BONE_WORDS.search(site_words):
                found.add("radiotherapy-bone")
            if "bodysite-brain" in sites or _BRAIN_WORDS.search(site_words):
                found.add("radiotherapy-brain")
        label_text = _display_of(code)
        for name in found:
            if name in TREATMENTS:
                self.facts.treatments.setdefault(name, []).append(
                    Dated(ref, when, label_text or TREATMENT_LABELS[name]))

    _handlers = {
        "Condition": _condition,
        "Observation": _observation,
        "Medication": _medication,
        "MedicationRequest": _medication_request,
        "MedicationStatement": _medication_statement,
        "ServiceRequest": _service_request,
        "Encounter": _encounter,
        "CareTeam": _care_team,
        "DocumentReference": _document_reference,
        "Consent": _consent,
        "Goal": _goal,
        "Procedure": _procedure,
        "AllergyIntolerance": _allergy,
    }

    # -- finishing -------------------------------------------------------------------------------------
    def finish(self) -> PatientFacts:
        for request, when in self.pending_meds:
            self._classify_use(request, when)
        facts = self.facts
        facts.gaps = [ReadGap(rtype, kind, cause, count) for (rtype, cause, kind), count in self.gap_counts.items()]
        # Rules v2 section 1: personal history of breast cancer + a distant metastasis = metastatic recurrence.
        if self.history and not facts.breast_primary and (facts.metastasis or facts.staging_m1):
            facts.breast_primary.extend(self.history)
        obs: dict[str, list[Measurement]] = {}
        for name, pairs in self.raw_obs.items():
            pairs.sort(key=lambda pair: pair[0].when)
            obs[name] = [m for m, _ in pairs]
        facts.observations = obs
        for items in facts.drugs.values():
            items.sort(key=lambda u: u.name)
        for dated in facts.treatments.values():
            dated.sort(key=lambda d: (d.when is None, d.when or facts.now))
        return facts


# The resource types the fact pass reads; app/data_requirements.py checks the knowledge declares exactly these.
HANDLED_TYPES = frozenset(_FactBuilder._handlers)


def _short_drug_name(name: str) -> str:
    """'Morphine sulfate 10 MG Oral Tablet' -> 'morphine sulfate'; keeps the words before the first number."""
    words: list[str] = []
    for word in name.split():
        if any(map(str.isdigit, word)) or word.startswith("["):
            break
        words.append(word)
        if len(words) == 3:
            break
    return " ".join(words).lower().strip(",;") or name.lower()


def build_facts(resources: Iterable[JsonObject], *, patient_id: str, now: datetime, terminology: TerminologyLike,
                acute_window: timedelta, assessment_window: timedelta) -> PatientFacts:
    builder = _FactBuilder(patient_id, now, terminology, acute_window, assessment_window)
    for resource in resources:
        builder.add(resource)
    return builder.finish()
