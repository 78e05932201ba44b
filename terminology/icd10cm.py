"""ICD-10-CM look-ups for the loader: a shipped snapshot of what the value sets need, else simple-icd-10-cm.

Importing simple-icd-10-cm parses the whole classification (about 2.5 s), which would dominate the service's
cold start. `icd10cm_snapshot.json` holds the validity, description and descendants of every ICD-10-CM code the
value sets name, taken from simple-icd-10-cm; `tests/test_terminology.py` checks the snapshot against the library,
and `python -m terminology.icd10cm` rebuilds it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).parent / "icd10cm_snapshot.json"


@functools.lru_cache(maxsize=1)
def _snapshot() -> dict[str, dict[str, Any]]:
    try:
        snapshot: dict[str, dict[str, Any]] = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
        return snapshot
    except (OSError, ValueError):
        return {}


def _library() -> Any:
    import simple_icd_10_cm  # type: ignore[import-untyped]  # no stubs and no py.typed upstream

    return simple_icd_10_cm


def is_valid_item(code: str) -> bool:
    entry = _snapshot().get(code)
    if entry is not None:
        return bool(entry["valid"])
    return bool(_library().is_valid_item(code))


def get_description(code: str) -> str:
    entry = _snapshot().get(code)
    if entry is not None and "description" in entry:
        return str(entry["description"])
    return str(_library().get_description(code))


def get_descendants(code: str) -> list[str]:
    entry = _snapshot().get(code)
    if entry is not None and "descendants" in entry:
        return list(entry["descendants"])
    return list(_library().get_descendants(code))


def build_snapshot(codes: list[str], roots: list[str]) -> dict[str, dict[str, Any]]:
    lib = _library()
    out: dict[str, dict[str, Any]] = {}
    for code in sorted(set(codes) | set(roots)):
        valid = bool(lib.is_valid_item(code))
        entry: dict[str, Any] = {"valid": valid}
        if valid:
            entry["description"] = lib.get_description(code)
        if valid and code in roots:
            descendants = list(lib.get_descendants(code))
            entry["descendants"] = descendants
            for d in descendants:
                out.setdefault(d, {"valid": True, "description": lib.get_description(d)})
        out[code] = entry
    return out


def referenced_codes(valueset_dir: Path) -> tuple[list[str], list[str]]:
    from terminology.loader import ICD10CM, _icd_dotted

    codes: list[str] = []
    roots: list[str] = []
    for path in sorted(valueset_dir.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for include in data.get("compose", {}).get("include", []):
            if include.get("system") != ICD10CM:
                continue
            codes.extend(_icd_dotted(c["code"]) for c in include.get("concept") or ())
            roots.extend(_icd_dotted(f["value"]) for f in include.get("filter") or ())
    return codes, roots


def main() -> None:
    codes, roots = referenced_codes(Path(__file__).parent / "valuesets")
    SNAPSHOT.write_text(json.dumps(build_snapshot(codes, roots), indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {SNAPSHOT} ({len(codes)} codes, {len(roots)} is-a roots)")


if __name__ == "__main__":
    main()
