"""Read a population and hand it out one patient at a time.

Inputs:
- a FHIR Bulk Data export directory: one NDJSON file per resource type as ``$export`` writes them
  (``Patient.ndjson``, ``Condition.ndjson``, ``Condition.000.ndjson``, ``Observation_2.ndjson``, ``.ndjson.gz``);
- a directory of Bundle JSON files (any Bundle type; ``urn:uuid`` references resolved through ``fullUrl``);
- a single ``.ndjson`` file (mixed types) or a single Bundle ``.json`` file.

Memory: resources are never held as parsed JSON for more than one patient at a time. Pass 1 streams every
line and files it under its patient as raw bytes: in a dict when the input is smaller than ``bucket_bytes``,
otherwise in ``ceil(input size / bucket_bytes)`` temporary bucket files chosen by a stable hash of the patient id
(a Grace-hash partition, the disk-backed equivalent of "sort by patient"). Pass 2 loads one bucket at a time,
groups its lines by patient and parses one patient's lines just before that patient is evaluated. Peak memory is
therefore about one bucket of raw bytes plus one patient's parsed resources, plus the Medication resources
(shared by all patients, loaded once) and the worklist rows themselves.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

import orjson

from app.bundles import bundle_resources
from app.data_requirements import record_types

DEFAULT_BUCKET_BYTES = 128 * 1024 * 1024

# Where a resource names its patient (Patient compartment fields used by the types the engine reads).
PATIENT_FIELDS = ("subject", "patient", "for", "beneficiary", "individual")
PATIENT_IN_URL = r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/|$)"
_PATIENT_IN_URL = re.compile(PATIENT_IN_URL)
_NDJSON_NAME = re.compile(r"^([A-Z][A-Za-z]+)(?:[._\-].*)?\.ndjson(?:\.gz)?$")


# The resource types the rules read (Library-mbc-cds-data-requirements.json); other types are skipped.
ENGINE_TYPES = record_types()


@dataclass
class ReadStats:
    files: int = 0
    files_skipped: list[str] = field(default_factory=list)   # types the engine does not read
    resources: int = 0
    unparsable: int = 0          # lines / files that are not JSON objects with a resourceType
    without_patient: int = 0     # resources that name no patient (and are not a Medication)
    other_types: int = 0         # resources of types the engine does not read
    medications: int = 0
    duplicates: int = 0          # same resourceType/id seen twice for one patient (first kept)
    patients: int = 0            # patients with at least one resource
    buckets: int = 1
    spilled_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def patient_of(resource: dict[str, Any]) -> str | None:
    """The id of the patient a resource belongs to, or None."""
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) and rid else None
    for name in PATIENT_FIELDS:
        ref = resource.get(name)
        if isinstance(ref, list):  # e.g. Provenance.target; first one that names a patient
            ref = next((r for r in ref if isinstance(r, dict)), None)
        if not isinstance(ref, dict):
            continue
        target = ref.get("reference")
        if not isinstance(target, str):
            continue
        if target.startswith("Patient/"):
            pid = target[8:].split("/", 1)[0]
            return pid or None
        m = _PATIENT_IN_URL.search(target)
        if m:
            return m.group(1)
    return None


def medication_refs(resource: dict[str, Any]) -> list[str]:
    ref = resource.get("medicationReference")
    if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
        return [ref["reference"]]
    return []


def ndjson_files(path: Path) -> list[tuple[str | None, Path]]:
    """(resource type from the file name or None, file) for every NDJSON file under ``path``, sorted."""
    if path.is_file():
        return [(None, path)]
    out: list[tuple[str | None, Path]] = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        if not (file.name.endswith(".ndjson") or file.name.endswith(".ndjson.gz")):
            continue
        m = _NDJSON_NAME.match(file.name)
        out.append((m.group(1) if m else None, file))
    return out


def bundle_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*.json") if p.is_file() and p.name != "manifest.json")


def detect_format(path: Path) -> str:
    """'ndjson' or 'bundles'."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_file():
        if path.name.endswith((".ndjson", ".ndjson.gz")):
            return "ndjson"
        if path.suffix == ".json":
            return "bundles"
        raise ValueError(f"{path}: expected a .ndjson file, a Bundle .json file or a directory")
    if ndjson_files(path):
        return "ndjson"
    if bundle_files(path):
        return "bundles"
    raise ValueError(f"{path}: no .ndjson or Bundle .json files found")


def open_lines(file: Path) -> io.BufferedIOBase:
    if file.name.endswith(".gz"):
        return gzip.GzipFile(file, "rb")
    return open(file, "rb")


def _loads(line: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) and isinstance(value.get("resourceType"), str) else None


# -- Bundles ---------------------------------------------------------------------------------------------------
def bundle_records(data: bytes | dict[str, Any], stats: ReadStats | None = None,
                   types: frozenset[str] = ENGINE_TYPES) -> Iterator[tuple[str, bytes]]:
    """(patient id, resource JSON) for every resource of one Bundle that the engine reads.

    The resources are read as a FHIR server stores them (:func:`app.bundles.bundle_resources`: ids from
    ``urn:uuid`` fullUrls, references between entries as ``Type/id``), so patient references may be
    ``Patient/<id>`` or absolute URLs. Medications that name no patient go to every patient of this Bundle whose
    medication resources reference them.
    """
    stats = stats if stats is not None else ReadStats()
    if isinstance(data, bytes | bytearray):
        try:
            bundle = orjson.loads(data)
        except orjson.JSONDecodeError:
            stats.unparsable += 1
            return
    else:
        bundle = data
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        stats.unparsable += 1
        return
    entries = sum(1 for e in bundle.get("entry") or [] if isinstance(e, dict) and isinstance(e.get("resource"), dict))
    resources = bundle_resources(bundle, copy=False)  # the reader's own Bundle (parsed here or handed over)
    stats.resources += entries
    stats.unparsable += entries - len(resources)
    patients = {r["id"] for r in resources if r["resourceType"] == "Patient" and r.get("id")}
    only_patient = next(iter(patients)) if len(patients) == 1 else None
    shared_meds: dict[str, dict[str, Any]] = {}
    wanted_meds: dict[str, set[str]] = {}
    for r in resources:
        rtype = r["resourceType"]
        if rtype not in types:
            stats.other_types += 1
            continue
        pid = patient_of(r)
        if rtype == "Medication" and pid is None:
            stats.medications += 1
            rid = r.get("id")
            if isinstance(rid, str) and rid:
                shared_meds[f"Medication/{rid}"] = r
            continue
        if pid is None:
            pid = only_patient
        if pid is None:
            stats.without_patient += 1
            continue
        for ref in medication_refs(r):
            wanted_meds.setdefault(ref, set()).add(pid)
        yield pid, orjson.dumps(r)
    for ref, pids in wanted_meds.items():
        med = shared_meds.get(ref)
        if med is not None:
            line = orjson.dumps(med)
            for pid in sorted(pids):
                yield pid, line


# -- NDJSON ------------------------------------------------------------------------------------------------------
def ndjson_record(line: bytes, stats: ReadStats | None = None,
                  types: frozenset[str] = ENGINE_TYPES) -> tuple[str, str | None, dict[str, Any] | None]:
    """Classify one NDJSON line: ('patient', pid, None), ('medication', None, resource) or ('skip', None, None)."""
    stats = stats if stats is not None else ReadStats()
    line = line.strip()
    if not line:
        return "skip", None, None
    stats.resources += 1
    r = _loads(line)
    if r is None:
        stats.unparsable += 1
        return "skip", None, None
    rtype = r["resourceType"]
    if rtype not in types:
        stats.other_types += 1
        return "skip", None, None
    pid = patient_of(r)
    if pid is not None:
        return "patient", pid, None
    if rtype == "Medication":
        stats.medications += 1
        return "medication", None, r
    stats.without_patient += 1
    return "skip", None, None


# -- grouping ----------------------------------------------------------------------------------------------------
def prepare_group(lines: Iterable[bytes | str], medications: dict[str, dict[str, Any]] | None = None,
                  stats: ReadStats | None = None) -> list[dict[str, Any]]:
    """Parse one patient's lines into resources in a canonical order (type, id, content) with duplicates
    (same type and id) dropped, plus the shared Medications their requests reference. Both engines call this, so
    local and Spark runs see the same resources in the same order whatever order the input or a shuffle had."""
    parsed: list[tuple[str, str, bytes, dict[str, Any]]] = []
    for line in lines:
        raw = line.encode() if isinstance(line, str) else bytes(line)
        r = _loads(raw)
        if r is None:
            continue
        rid = r.get("id")
        parsed.append((r["resourceType"], rid if isinstance(rid, str) else "", raw, r))
    parsed.sort(key=lambda t: (t[0], t[1], t[2]))
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for rtype, rid, _, r in parsed:
        if rid:
            if (rtype, rid) in seen:
                if stats is not None:
                    stats.duplicates += 1
                continue
            seen.add((rtype, rid))
        out.append(r)
    if medications:
        extra = []
        for r in out:
            for ref in medication_refs(r):
                med = medications.get(ref)
                if med is not None and ("Medication", med.get("id", "")) not in seen:
                    seen.add(("Medication", str(med.get("id", ""))))
                    extra.append(med)
        out.extend(sorted(extra, key=lambda m: str(m.get("id", ""))))
    return out


class _Grouper:
    """Raw lines filed by patient: in memory, or spilled to hash buckets on disk."""

    def __init__(self, n_buckets: int, tmpdir: str | None = None) -> None:
        self.n_buckets = max(1, n_buckets)
        self.memory: dict[str, list[bytes]] = {}
        self.dir: str | None = None
        self.files: list[IO[bytes]] = []
        self.spilled = 0
        if self.n_buckets > 1:
            self.dir = tempfile.mkdtemp(prefix="mbc-worklist-", dir=tmpdir)
            self.files = [open(os.path.join(self.dir, f"bucket-{i:04d}"), "wb")
                          for i in range(self.n_buckets)]

    def add(self, pid: str, line: bytes) -> None:
        if not self.files:
            self.memory.setdefault(pid, []).append(line)
            return
        key = pid.encode()
        record = key + b"\t" + line.replace(b"\n", b" ") + b"\n"
        self.spilled += len(record)
        self.files[zlib.crc32(key) % self.n_buckets].write(record)

    def groups(self) -> Iterator[tuple[str, list[bytes]]]:
        if not self.files:
            memory, self.memory = self.memory, {}
            for pid in sorted(memory):
                yield pid, memory.pop(pid)
            return
        for f in self.files:
            f.close()
        try:
            for i in range(self.n_buckets):
                assert self.dir is not None
                path = os.path.join(self.dir, f"bucket-{i:04d}")
                bucket: dict[str, list[bytes]] = {}
                with open(path, "rb") as f:
                    for record in f:
                        key, _, line = record.rstrip(b"\n").partition(b"\t")
                        bucket.setdefault(key.decode(), []).append(line)
                os.unlink(path)
                for pid in sorted(bucket):
                    yield pid, bucket.pop(pid)
        finally:
            self.cleanup()

    def cleanup(self) -> None:
        for f in self.files:
            if not f.closed:
                f.close()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


@dataclass
class PatientGroup:
    patient_id: str
    resources: list[dict[str, Any]]


class PopulationReader:
    """Iterate over a population, one patient (with all of that patient's resources) at a time."""

    def __init__(self, path: str | Path, *, bucket_bytes: int = DEFAULT_BUCKET_BYTES,
                 tmpdir: str | None = None, types: frozenset[str] = ENGINE_TYPES) -> None:
        self.path = Path(path)
        self.format = detect_format(self.path)
        self.bucket_bytes = max(1, int(bucket_bytes))
        self.tmpdir = tmpdir
        self.types = types
        self.stats = ReadStats()
        self.medications: dict[str, dict[str, Any]] = {}

    # sizes and counts known before reading
    def input_files(self) -> list[Path]:
        if self.format == "bundles":
            return bundle_files(self.path)
        return [f for t, f in ndjson_files(self.path) if t is None or t in self.types]

    def input_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.input_files())

    def patient_count_hint(self) -> int | None:
        """Lines in the Patient NDJSON files (cheap newline count); None for Bundles or mixed files."""
        if self.format != "ndjson":
            return None
        files = [f for t, f in ndjson_files(self.path) if t == "Patient"]
        if not files:
            return None
        total = 0
        for f in files:
            with open_lines(f) as fh:
                for block in iter(partial(fh.read, 1 << 20), b""):
                    total += block.count(b"\n")
        return total

    def _records(self) -> Iterator[tuple[str, bytes]]:
        if self.format == "bundles":
            for file in bundle_files(self.path):
                self.stats.files += 1
                yield from bundle_records(file.read_bytes(), self.stats, self.types)
            return
        files = ndjson_files(self.path)
        for rtype, file in files:
            if rtype is not None and rtype not in self.types:
                self.stats.files_skipped.append(file.name)
        # Medications first: they name no patient, and patients reference them.
        for rtype, file in files:
            if rtype == "Medication":
                self.stats.files += 1
                with open_lines(file) as fh:
                    for line in fh:
                        kind, _, med = ndjson_record(line, self.stats, self.types)
                        if kind == "medication" and med is not None and isinstance(med.get("id"), str):
                            self.medications[f"Medication/{med['id']}"] = med
        for rtype, file in files:
            if rtype == "Medication" or (rtype is not None and rtype not in self.types):
                continue
            self.stats.files += 1
            with open_lines(file) as fh:
                for line in fh:
                    kind, pid, med = ndjson_record(line, self.stats, self.types)
                    if kind == "patient" and pid is not None:
                        yield pid, line.strip()
                    elif kind == "medication" and med is not None and isinstance(med.get("id"), str):
                        self.medications[f"Medication/{med['id']}"] = med

    def __iter__(self) -> Iterator[PatientGroup]:
        n_buckets = math.ceil(self.input_bytes() / self.bucket_bytes) if self.input_bytes() else 1
        grouper = _Grouper(n_buckets, self.tmpdir)
        self.stats.buckets = grouper.n_buckets
        try:
            for pid, line in self._records():
                grouper.add(pid, line)
            self.stats.spilled_bytes = grouper.spilled
            for pid, lines in grouper.groups():
                self.stats.patients += 1
                yield PatientGroup(pid, prepare_group(lines, self.medications, self.stats))
        finally:
            grouper.cleanup()
