"""Synthetic populations for the worklist, built from the sample patients.

    python -m app.worklist.generate --patients 1000 --out /tmp/pop [--seed 7] [--now 2026-11-20T10:00:00Z]

Every patient is a copy of one template patient (the demo samples in :mod:`app.samples`, plus the clinical test
scenarios in ``tests/scenarios`` when the repository checkout has them) with a new id, its timeline moved back by
0-45 days, and random variations: observations dropped or their values moved (pain, ECOG, Karnofsky, distress,
PHQ-9, GAD-7, calcium, SpO2, weight), drugs dropped or stopped, referrals / ACP documents / encounters dropped,
and new pain scores, ECOG scores, distress scores, opioids, laxatives, palliative care referrals and advance
directives added. Some MedicationRequests point to a shared Medication resource (``Medication.ndjson``) instead of
carrying the code, filler observations outside the value sets (vital signs) make the records heavier, and a few
resources of types the engine does not read (Immunization) are mixed in.

Output: FHIR Bulk Data style NDJSON, one file per type (``Patient.ndjson``, ``Condition.ndjson``, ... or
``Condition.000.ndjson`` ... with ``--split``) and a ``manifest.json`` shaped like an ``$export`` response; or, with
``--format bundles``, one collection Bundle per patient using ``urn:uuid`` references.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from app.bundles import bundle_resources, rewrite_references
from app.worklist.core import parse_now

if TYPE_CHECKING:
    from terminology import Terminology

_NS = uuid.UUID("3d0a4c1e-7b7e-4b9e-a1c2-5f1b9e0d7c11")
REPO_ROOT = Path(__file__).resolve().parents[2]
SCENARIO_DIR = REPO_ROOT / "tests" / "scenarios"

# Observation value ranges by value-set concept: (low, high, step of a random move).
_INT_RANGES = {"obs-ecog": (0, 4, 1), "obs-pain-score": (0, 10, 2), "obs-distress": (0, 10, 2),
               "obs-phq9": (0, 27, 3), "obs-phq2": (0, 6, 1), "obs-gad7": (0, 21, 3), "obs-karnofsky": (10, 100, 10)}
_QTY_SCALE = {"obs-calcium": 0.08, "obs-corrected-calcium": 0.08, "obs-spo2": 0.03, "obs-body-weight": 0.05,
              "obs-albumin": 0.05}
_FILLER = (("8867-4", "Heart rate", "/min", 55, 110), ("8310-5", "Body temperature", "Cel", 36, 38.5),
           ("9279-1", "Respiratory rate", "/min", 12, 24), ("8480-6", "Systolic blood pressure", "mm[Hg]", 95, 160))


@dataclass
class Template:
    name: str
    patient_id: str
    resources: list[dict[str, Any]]


def load_templates(now: datetime, which: str = "all") -> list[Template]:
    """Template patients with their dates moved so that the sample's 'now' is ``now``."""
    templates: list[Template] = []
    shift = None
    try:
        from app.samples import list_samples, shift_dates

        shift = shift_dates
        if which in ("all", "samples"):
            for s in list_samples(now=now):
                resources = bundle_resources(s["bundle"])
                templates.append(Template(f"sample:{s['id']}", s["id"], resources))
    except ImportError:
        if which == "samples":
            raise
    if which in ("all", "scenarios") and SCENARIO_DIR.is_dir():
        for file in sorted(SCENARIO_DIR.glob("*.json")):
            data = orjson.loads(file.read_bytes())
            if data.get("resource_level") or not data.get("resources"):
                continue  # scenarios for another resource level would not fit a population run
            bundle = {"resourceType": "Bundle", "entry": [{"resource": r} for r in data["resources"]]}
            if shift is not None and data.get("now"):
                bundle = shift(bundle, now, reference=parse_now(data["now"]))
            resources = bundle_resources(bundle)
            pid = next((r["id"] for r in resources if r.get("resourceType") == "Patient"), None)
            if pid:
                templates.append(Template(f"scenario:{file.stem}", pid, resources))
    if not templates:
        raise SystemExit("no template patients: app.samples is missing and tests/scenarios was not found")
    return templates


def _concepts(term: Terminology | None, cc: Any) -> set[str]:
    return term.concepts_of_codeable(cc) if term is not None else set()


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Generator:
    def __init__(self, *, seed: int = 1, now: datetime, filler: int = 20, templates: str = "all",
                 prefix: str = "wl") -> None:
        from terminology import get_terminology

        self.rng = random.Random(seed)
        self.seed = seed
        self.now = now
        self.filler = filler
        self.prefix = prefix
        self.term = get_terminology()
        self.templates = load_templates(now, templates)
        self.medications: dict[str, dict[str, Any]] = {}
        self._codes = {c: self.term.first_coding(c) for c in (
            "service-palliative-care", "acp-document", "obs-pain-score", "obs-ecog", "obs-distress",
            "drug-strong-opioid", "drug-laxative")}
        # Concepts of each template observation code, computed once.
        self._obs_concepts: dict[str, set[str]] = {}
        try:
            from app.samples import shift_dates

            self._shift: Any = shift_dates
        except ImportError:  # no samples module: timelines are not moved
            self._shift = None

    # -- helpers ---------------------------------------------------------------------------------------------
    def _coding(self, concept: str) -> dict[str, Any]:
        coding = self._codes.get(concept)
        if coding is None:
            raise SystemExit(f"terminology has no code for {concept}")
        return dict(coding)

    def _when(self, max_days: int) -> str:
        return _iso(self.now - timedelta(days=self.rng.randint(0, max_days), hours=self.rng.randint(0, 12)))

    def _obs(self, pid: str, rid: str, concept: str, value: int, when: str) -> dict[str, Any]:
        return {"resourceType": "Observation", "id": rid, "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                          "code": "survey"}]}],
                "code": {"coding": [self._coding(concept)]}, "subject": {"reference": f"Patient/{pid}"},
                "effectiveDateTime": when, "valueInteger": value}

    def _observation_concept(self, r: dict[str, Any]) -> str | None:
        key = orjson.dumps(r.get("code")).decode()
        concepts = self._obs_concepts.get(key)
        if concepts is None:
            concepts = {c for c in _concepts(self.term, r.get("code")) if c.startswith("obs-")}
            self._obs_concepts[key] = concepts
        return next(iter(sorted(concepts)), None)

    # -- one patient -----------------------------------------------------------------------------------------
    def patient(self, n: int) -> list[dict[str, Any]]:
        rng = self.rng
        template = rng.choice(self.templates)
        pid = f"{self.prefix}-{self.seed}-{n:06d}"
        resources: list[dict[str, Any]] = orjson.loads(orjson.dumps(template.resources))
        days_back = 0 if rng.random() < 0.4 else rng.randint(1, 45)
        if days_back and self._shift is not None:
            bundle = {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}
            shifted = self._shift(bundle, self.now - timedelta(days=days_back), reference=self.now)
            resources = bundle_resources(shifted)
        old_pid = template.patient_id
        ids: dict[str, str] = {}
        for i, r in enumerate(resources):
            rid = str(r.get("id") or f"r{i}")
            new = pid if r.get("resourceType") == "Patient" else (
                pid + rid[len(old_pid):] if rid.startswith(old_pid) else f"{pid}-{rid}")
            ids[f"{r.get('resourceType')}/{rid}"] = f"{r.get('resourceType')}/{new}"
            r["id"] = new
        out: list[dict[str, Any]] = []
        for r in resources:
            rewrite_references(r, ids)
            kept = self._vary(r, pid)
            if kept is not None:
                out.append(kept)
        out.extend(self._additions(pid))
        return out

    def _vary(self, r: dict[str, Any], pid: str) -> dict[str, Any] | None:
        rng = self.rng
        rtype = r.get("resourceType")
        if rtype == "Observation":
            concept = self._observation_concept(r)
            if concept is None or concept in ("obs-tnm-m", "obs-disease-status"):
                return r
            if rng.random() < 0.15:
                return None
            if rng.random() < 0.35:
                if concept in _INT_RANGES and isinstance(r.get("valueInteger"), int):
                    lo, hi, step = _INT_RANGES[concept]
                    value = r["valueInteger"] + rng.choice((-step, step))
                    r["valueInteger"] = max(lo, min(hi, value))
                elif concept in _QTY_SCALE and isinstance((r.get("valueQuantity") or {}).get("value"), int | float):
                    q = r["valueQuantity"]
                    q["value"] = round(q["value"] * (1 + rng.uniform(-1, 1) * _QTY_SCALE[concept]), 2)
            return r
        if rtype in ("MedicationRequest", "MedicationStatement"):
            if rng.random() < 0.2:
                return None
            if rng.random() < 0.1:
                r["status"] = "stopped"
            if rng.random() < 0.2 and isinstance(r.get("medicationCodeableConcept"), dict):
                r["medicationReference"] = {"reference": self._medication(r.pop("medicationCodeableConcept"))}
            return r
        if rtype in ("ServiceRequest", "Encounter") and rng.random() < 0.3:
            return None
        if rtype in ("DocumentReference", "Consent", "Goal", "CareTeam") and rng.random() < 0.25:
            return None
        if rtype == "Condition" and rng.random() < 0.03:
            return None  # now and then a record loses a condition (may leave the population in scope or not)
        return r

    def _medication(self, cc: dict[str, Any]) -> str:
        coding = next((c for c in cc.get("coding") or [] if isinstance(c, dict) and c.get("code")), None)
        key = (coding or {}).get("code") or orjson.dumps(cc).decode()
        mid = "med-" + str(uuid.uuid5(_NS, str(key)))[:13]
        if mid not in self.medications:
            self.medications[mid] = {"resourceType": "Medication", "id": mid, "status": "active", "code": cc}
        return f"Medication/{mid}"

    def _additions(self, pid: str) -> list[dict[str, Any]]:
        rng = self.rng
        subject = {"reference": f"Patient/{pid}"}
        out: list[dict[str, Any]] = []
        if rng.random() < 0.2:
            out.append(self._obs(pid, f"{pid}-gen-pain", "obs-pain-score", rng.randint(0, 10), self._when(20)))
        if rng.random() < 0.1:
            out.append(self._obs(pid, f"{pid}-gen-ecog", "obs-ecog", rng.randint(0, 4), self._when(40)))
        if rng.random() < 0.08:
            out.append(self._obs(pid, f"{pid}-gen-distress", "obs-distress", rng.randint(0, 10), self._when(25)))
        if rng.random() < 0.15:
            out.append({"resourceType": "ServiceRequest", "id": f"{pid}-gen-pc", "status": "active",
                        "intent": "order", "code": {"coding": [self._coding("service-palliative-care")]},
                        "subject": subject, "authoredOn": self._when(200)})
        if rng.random() < 0.12:
            out.append({"resourceType": "DocumentReference", "id": f"{pid}-gen-acp", "status": "current",
                        "type": {"coding": [self._coding("acp-document")]}, "subject": subject,
                        "date": self._when(300),
                        "content": [{"attachment": {"contentType": "text/plain", "title": "Advance directive"}}]})
        for concept, p, tag in (("drug-strong-opioid", 0.1, "opioid"), ("drug-laxative", 0.1, "laxative")):
            if rng.random() < p:
                cc = {"coding": [self._coding(concept)]}
                med: dict[str, Any] = {"resourceType": "MedicationRequest", "id": f"{pid}-gen-{tag}",
                                       "status": "active", "intent": "order", "subject": subject,
                                       "authoredOn": self._when(60)}
                if rng.random() < 0.3:
                    med["medicationReference"] = {"reference": self._medication(cc)}
                else:
                    med["medicationCodeableConcept"] = cc
                out.append(med)
        for i in range(self.filler):
            code, display, unit, lo, hi = _FILLER[i % len(_FILLER)]
            out.append({"resourceType": "Observation", "id": f"{pid}-vs-{i}", "status": "final",
                        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                            "observation-category", "code": "vital-signs"}]}],
                        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
                        "subject": subject, "effectiveDateTime": self._when(365),
                        "valueQuantity": {"value": round(rng.uniform(lo, hi), 1), "unit": unit,
                                          "system": "http://unitsofmeasure.org", "code": unit}})
        if rng.random() < 0.3:
            out.append({"resourceType": "Immunization", "id": f"{pid}-imm", "status": "completed",
                        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140",
                                                    "display": "Influenza, seasonal, injectable"}]},
                        "patient": subject, "occurrenceDateTime": self._when(300)})
        return out

    def patients(self, count: int) -> Iterator[list[dict[str, Any]]]:
        for n in range(count):
            yield self.patient(n)


class NdjsonWriter:
    """One NDJSON file per resource type; with ``split`` a new numbered file every ``split`` lines."""

    def __init__(self, out: Path, split: int = 0) -> None:
        self.out = out
        self.split = split
        self.files: dict[str, IO[bytes]] = {}
        self.counts: dict[str, int] = {}
        self.paths: dict[str, list[str]] = {}

    def _file(self, rtype: str) -> IO[bytes]:
        n = self.counts.get(rtype, 0)
        if rtype not in self.files or (self.split and n and n % self.split == 0):
            if rtype in self.files:
                self.files[rtype].close()
            name = f"{rtype}.{n // self.split:03d}.ndjson" if self.split else f"{rtype}.ndjson"
            self.files[rtype] = open(self.out / name, "wb")
            self.paths.setdefault(rtype, []).append(name)
        return self.files[rtype]

    def write(self, resource: dict[str, Any]) -> None:
        rtype = str(resource["resourceType"])
        self._file(rtype).write(orjson.dumps(resource) + b"\n")
        self.counts[rtype] = self.counts.get(rtype, 0) + 1

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def _bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A collection Bundle with urn:uuid fullUrls and references (as a client building a transaction would)."""
    urns = {f"{r['resourceType']}/{r['id']}": f"urn:uuid:{uuid.uuid5(_NS, r['resourceType'] + '/' + r['id'])}"
            for r in resources}
    entries = []
    for r in resources:
        r = orjson.loads(orjson.dumps(r))
        rewrite_references(r, urns)
        entries.append({"fullUrl": urns[f"{r['resourceType']}/{r['id']}"], "resource": r})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def generate(out: str | Path, patients: int, *, seed: int = 1, now: datetime | None = None, filler: int = 20,
             split: int = 0, fmt: str = "ndjson", templates: str = "all", progress: bool = False) -> dict[str, Any]:
    """Write a population; returns the manifest (counts per type)."""
    now = now or datetime.now(UTC).replace(microsecond=0)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    gen = Generator(seed=seed, now=now, filler=filler, templates=templates)
    t0 = time.perf_counter()
    writer = NdjsonWriter(out, split) if fmt == "ndjson" else None
    counts: dict[str, int] = {}
    for n, resources in enumerate(gen.patients(patients), 1):
        for r in resources:
            counts[r["resourceType"]] = counts.get(r["resourceType"], 0) + 1
        if writer is not None:
            for r in resources:
                writer.write(r)
        else:
            meds = {ref.get("reference") for r in resources
                    for ref in [r.get("medicationReference")] if isinstance(ref, dict)}
            extra = [gen.medications[m.split("/", 1)[1]] for m in sorted(x for x in meds if x)]
            (out / f"{resources[0]['id'] if resources else n}.json").write_bytes(
                orjson.dumps(_bundle(resources + extra)))
        if progress and n % 1000 == 0:
            sys.stderr.write(f"\rgenerated {n:,}/{patients:,} patients ({n / (time.perf_counter() - t0):,.0f}/s)")
            sys.stderr.flush()
    if progress:
        sys.stderr.write("\n")
    if writer is not None:
        for med in gen.medications.values():
            writer.write(med)
        writer.close()
        counts["Medication"] = len(gen.medications)
    manifest = {
        "transactionTime": _iso(now),
        "request": f"mbc-cds generate --patients {patients} --seed {seed}",
        "requiresAccessToken": False,
        "output": [{"type": t, "url": name, "count": writer.counts.get(t, 0)}
                   for t, names in sorted(writer.paths.items()) for name in names] if writer else [],
        "error": [],
        "extension": {"generator": {"patients": patients, "seed": seed, "filler": filler, "format": fmt,
                                    "templates": [t.name for t in gen.templates], "resources": counts}},
    }
    (out / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.worklist.generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patients", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--now", help="the export time the timelines end at (ISO 8601; default now)")
    p.add_argument("--filler", type=int, default=20, help="vital-sign observations per patient (default 20)")
    p.add_argument("--split", type=int, default=0, help="start a new numbered NDJSON file every N lines")
    p.add_argument("--format", choices=("ndjson", "bundles"), default="ndjson")
    p.add_argument("--templates", choices=("all", "samples", "scenarios"), default="all")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    manifest = generate(args.out, args.patients, seed=args.seed, now=parse_now(args.now) if args.now else None,
                        filler=args.filler, split=args.split, fmt=args.format, templates=args.templates,
                        progress=sys.stderr.isatty())
    info = manifest["extension"]["generator"]
    total = sum(info["resources"].values())
    print(f"wrote {args.patients:,} patients ({total:,} resources, {len(info['templates'])} templates) to "
          f"{args.out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
