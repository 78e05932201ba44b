"""One worklist row per patient, from the hook's own evaluation; ranking.

Nothing clinical is decided here: every patient goes through :meth:`app.service.evaluate.RecordEvaluator.evaluate`,
exactly as a ``patient-view`` call would, and the row only reads the outcome's structure (fired rules with
their evidence, phase, sites), never the cards' Markdown.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:  # imported lazily at run time (Spark workers import this module)
    from app.engine.engine import FiredRule
    from app.service.evaluate import RecordEvaluator
    from app.service.outcome import HookOutcome
    from app.settings import Settings
    from cds_hooks.cards import Card, FhirResource
    from plandefinitions.worklist_tiers import WorklistTier

# Fixed hookInstance: card and suggestion uuids are derived from it, so two runs (local, Spark) give the same ids.
HOOK_INSTANCE = "mbc-cds-worklist"



class WorklistRow(TypedDict):
    """One patient of the worklist; the keys, in this order, are the columns of its files (docs/worklist.md)."""

    rank: int
    patient_id: str
    tier: int
    tier_label: str
    phase: str
    phase_evidence: list[str]
    sites: list[str]
    emergencies: list[str]
    rules: list[str]
    n_critical: int
    n_warning: int
    n_info: int
    top_rule: str
    top_action: str
    top_summary: str
    why: str


COLUMNS: tuple[str, ...] = tuple(WorklistRow.__annotations__)
LIST_COLUMNS = ("phase_evidence", "sites", "emergencies", "rules")


def parse_now(value: str | datetime | None) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return datetime.now(UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def make_settings(resource_level: str | None = None, **overrides: Any) -> Settings:
    from app.settings import Settings

    values: dict[str, Any] = {"require_jwt": False}
    if resource_level:
        values["resource_level"] = resource_level
    values.update(overrides)
    return Settings(**values)


def settings_payload(settings: Settings) -> str:
    """Every setting, as JSON, for the Spark workers, so that their evaluation cannot differ from the driver's
    (RecordEvaluator keys its cache on the same dump). Secrets go too: the uuid secret (or audit salt) keys the
    card and suggestion uuids, and the workers run in the driver's trust domain (docs/worklist.md)."""
    return settings.model_dump_json()


def settings_from_payload(payload: str) -> Settings:
    """The driver's Settings, rebuilt from :func:`settings_payload` alone: validated, but not read from the
    worker's environment or .env file."""
    from app.settings import Settings

    return Settings.model_validate_json(payload)


def top_card(fired: list[FiredRule]) -> FiredRule:
    """The highest-ranked card that recommends something: the engine's order (critical > warning > info, then
    the PlanDefinition display rank), skipping the overview card unless it is the only one."""
    return next((f for f in fired if f.rule.tier != "overview"), fired[0])


def why_of(fired: FiredRule) -> str:
    """The evidence the card lists first (its **Why**, or the overview's phase basis), as the card words each
    line; the phase has its own column."""
    from app.engine.engine import evidence_text

    return "; ".join(evidence_text(e) for e in fired.evidence)


def action_of(card: Card) -> str:
    """The first suggestion's label, or the card summary when it offers no suggestion."""
    for s in card.get("suggestions") or []:
        if s["label"]:
            return s["label"]
    return card["summary"]


def worklist_tier(fired: list[FiredRule], phase: str) -> WorklistTier:
    """The patient's tier: the first-ranked worklist-tier of the fired rules that holds in the phase (ranks and
    phases from CodeSystem mbc-cds-worklist-tiers), else the last tier."""
    from plandefinitions.worklist_tiers import worklist_tiers

    return worklist_tiers().of([f.rule.worklist_tier for f in fired], phase)


@lru_cache(maxsize=1)
def _shipped_tiers_by_rule() -> dict[str, WorklistTier | None]:
    from app.service.knowledge import load_knowledge

    return {r.id: r.worklist_tier for r in load_knowledge().rules}


def tier_of(rule_ids: list[str], phase: str) -> int:
    """The tier rank of a row read back from a worklist file (its `rules` and `phase`), under the shipped
    knowledge; rows being built take theirs from the fired rules (:func:`worklist_tier`)."""
    from plandefinitions.worklist_tiers import worklist_tiers

    tiers = _shipped_tiers_by_rule()
    return worklist_tiers().of([tiers.get(rid) for rid in rule_ids], phase).rank


def build_row(patient_id: str, outcome: HookOutcome) -> WorklistRow | None:
    """The worklist row for one HookOutcome, or None when the hook returns no card (patient not in scope)."""
    fired = outcome.fired
    if not fired:
        return None
    ev = outcome.evaluation
    rule_ids = [f.rule.id for f in fired]
    phase = ev.phase.name
    from app.clinical.facts import SITES

    sites = [s for s in SITES if s in ev.facts.sites]
    top = top_card(fired)
    counts = {k: sum(1 for f in fired if f.indicator == k) for k in ("critical", "warning", "info")}
    tier = worklist_tier(fired, phase)
    return {
        "rank": 0,
        "patient_id": patient_id,
        "tier": tier.rank,
        "tier_label": tier.code,
        "phase": phase,
        "phase_evidence": list(dict.fromkeys(e.code for e in ev.phase.evidence)),
        "sites": sites,
        "emergencies": [f.rule.id for f in fired if f.rule.emergency],
        "rules": rule_ids,
        "n_critical": counts["critical"],
        "n_warning": counts["warning"],
        "n_info": counts["info"],
        "top_rule": top.rule.id,
        "top_action": action_of(top.card),
        "top_summary": top.card["summary"],
        "why": why_of(top),
    }


def draft_requests(outcome: HookOutcome) -> list[FhirResource]:
    """The draft ServiceRequests the cards suggest, each with an id (the suggestion's stable uuid)."""
    out: list[FhirResource] = []
    for card in outcome.cards:
        for s in card.get("suggestions") or []:
            for action in s.get("actions") or []:
                resource = action.get("resource")
                if resource is not None and resource.get("resourceType") == "ServiceRequest":
                    draft = dict(resource)
                    draft["id"] = s.get("uuid", "")
                    out.append(draft)
    return out


def evaluate_group(evaluator: RecordEvaluator, patient_id: str, resources: list[dict[str, Any]], now: datetime,
                   *, drafts: bool = False) -> tuple[WorklistRow | None, list[FhirResource]]:
    outcome = evaluator.evaluate(resources, patient_id, now, server=False, hook_instance=HOOK_INSTANCE)
    row = build_row(patient_id, outcome)
    return row, (draft_requests(outcome) if drafts and row is not None else [])


def rank_key(row: WorklistRow) -> tuple[int, int, str]:
    return row["tier"], -(row["n_critical"] + row["n_warning"]), row["patient_id"]


def rank_rows(rows: list[WorklistRow]) -> list[WorklistRow]:
    """By tier rank; ties: more critical + warning cards first, then patient id."""
    ranked = sorted(rows, key=rank_key)
    for i, row in enumerate(ranked, 1):
        row["rank"] = i
    return ranked
