"""Apply the compiled rules to one patient's evaluation and produce CDS Hooks card dicts.

Cards are plain dicts in the CDS Hooks 2.0 shape (no pydantic on the hot path); optional fields with no value
are left out. Suggestion resources are validated with fhir.resources before they are emitted. What a card says
beyond its rule's own evidence and text (scope, the overview, the lines around a "Why", draft reasons and safety)
comes from the clinical frame the vocabulary carries (app.engine.frame): the engine lays it out.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from app.clinical.evaluation import Evaluation, Evidence
from app.engine.context import TemplateValues, render
from app.engine.frame import CardFrame
from app.engine.knowledge import INDICATOR_RANK, PRIORITY_TO_INDICATOR, Knowledge, Rule, SuggestionRule
from app.engine.suggestions import build_draft
from app.settings import RESOURCE_LEVELS
from cds_hooks.cards import SUMMARY_MAX, Action, Card, Coding, FhirResource, Indicator, Link, Source, Suggestion
from plandefinitions.loader import RULE_SYSTEM, load_artifacts, override_reasons

# Every card lists the same reasons, read (and checked) once from the shipped override-reason CodeSystem.
OVERRIDE_REASONS: list[Coding] = override_reasons(load_artifacts())
OVERRIDE_LABELS = {r["code"]: r.get("display", r["code"]) for r in OVERRIDE_REASONS}


@dataclass(frozen=True)
class EngineOptions:
    resource_level: str = "enhanced"
    info_card_cap: int = 5
    # Non-emergency answers stay within this many cards (section 6 target): info cards beyond it wait.
    card_budget: int = 8
    acp_app_url: str | None = None
    assessment_form_url: str | None = None
    # The deployment secret that keys card and suggestion uuids (see _stable_uuid).
    uuid_key: bytes = b"mbc-cds-uuid"


@dataclass(frozen=True, slots=True)
class Snooze:
    """A rule silenced for this patient by an override (clinical-rules.md section 6)."""

    rule_id: str
    reason: str
    until: datetime


@dataclass
class FiredRule:
    rule: Rule
    indicator: Indicator
    card: Card
    # What the card's first list says (its "Why", or the overview's first section), for readers of the outcome
    # that must not parse the card's Markdown back (the worklist).
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True, slots=True)
class Offer:
    """One suggestion as a rule offers it, before the engine gates, keys and marks it: its label, what keys its
    uuid under the card's, and its one action."""

    label: str
    key: tuple[str, ...]
    action: Action


class _Closing:
    """The frame's lines under every other card's "Why" (subject, status) for one request: asked for once, when
    the first card needs them."""

    __slots__ = ("_ev", "_frame", "_lines")

    def __init__(self, frame: CardFrame, ev: Evaluation) -> None:
        self._frame, self._ev = frame, ev
        self._lines: tuple[Evidence, Evidence] | None = None

    def __call__(self) -> tuple[Evidence, Evidence]:
        if self._lines is None:
            self._lines = (self._frame.subject(self._ev), self._frame.status(self._ev))
        return self._lines


def _level_ok(level: str, allowed: str) -> bool:
    return RESOURCE_LEVELS.index(level) <= RESOURCE_LEVELS.index(allowed)


@functools.lru_cache(maxsize=8)
def _keyed_hmac(key: bytes) -> hmac.HMAC:
    """HMAC-SHA256 with the key already absorbed (one key per deployment): each uuid copies it."""
    return hmac.new(key, digestmod=hashlib.sha256)


def _stable_uuid(key: bytes, *parts: str) -> str:
    """An RFC 9562 version-8 uuid from HMAC-SHA256(key, parts): the same hookInstance, patient and rule give
    the same uuid (feedback and repeated hooks match), yet without the deployment secret a uuid stored next
    to its hook instance and rule cannot be tested against guessed patient ids, as a uuid5 could."""
    message = "".join(f"{len(p)}:{p}" for p in parts).encode()
    mac = _keyed_hmac(key).copy()
    # update() keeps the GIL for short input; one-shot hmac.digest() releases it, and getting it back can wait
    # for the audit writer thread.
    mac.update(message)
    digest = bytearray(mac.digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _summary(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1].rstrip() + "…"


def evidence_text(e: Evidence) -> str:
    """One evidence line as the card shows it: the text, then at most four of the resources it rests on."""
    return f"{e.text} ({', '.join(e.refs[:4])})" if e.refs else e.text


def _unique(evidence: Iterable[Evidence]) -> list[Evidence]:
    seen: set[str] = set()
    out: list[Evidence] = []
    for e in evidence:
        if e.text not in seen:
            seen.add(e.text)
            out.append(e)
    return out


def _evidence_lines(evidence: Iterable[Evidence]) -> list[str]:
    return [f"- {evidence_text(e)}" for e in _unique(evidence)]


def _section(title: str, text: str | None, lines: Iterable[Evidence], *, gap: bool = False) -> list[str]:
    """A titled block of a card's detail: the bold title and its text, then one bullet per line; `gap` sets it
    apart from the block before it by a blank line."""
    head = ("\n" if gap else "") + f"**{title}**" + ("" if text is None else f" {text}")
    return [head, *(f"- {evidence_text(e)}" for e in lines)]


def _source_line(rule: Rule) -> str:
    cites = "; ".join(f"{c.label}" + (f" ({c.display})" if c.display and c.display != c.label else "")
                      for c in rule.citations)
    return f"\n**Source:** {cites}. Suggestions are drafts for a clinician to review and sign."


def _source(rule: Rule) -> Source:
    first = rule.citations[0]
    source: Source = {
        "label": f"mbc-cds: {first.label}"[:200],
        "topic": {"system": RULE_SYSTEM, "code": rule.id, "display": rule.display},
    }
    if first.url:
        source["url"] = first.url
    return source


def rule_evidence(rule: Rule, ev: Evaluation) -> list[Evidence] | None:
    """The evidence of every condition of the rule, or None as soon as one condition does not hold."""
    evidence: list[Evidence] = []
    for cond in rule.conditions:
        result = cond(ev)
        if result is None:
            return None
        evidence.extend(result)
    return evidence


class Engine:
    """The rules of one hook over one evaluation, as ranked cards.

    A hook whose rules differ in what they fire on, what their templates read or what they suggest (app.orders)
    subclasses it and overrides the public hooks `fires`, `values_for`, `offer` and `recommended`; the snoozes,
    the card layout, the draft-safety gate and the ranking stay here, one path for every hook.
    """

    def __init__(self, knowledge: Knowledge, options: EngineOptions, hook: str = "patient-view") -> None:
        self.options = options
        self.vocabulary = knowledge.vocabulary
        self._frame = knowledge.vocabulary.frame
        mine = [r for r in knowledge.rules if hook in r.hooks]
        self.rules = [r for r in mine if _level_ok(r.level, options.resource_level)]
        self._source_lines = {r.id: _source_line(r) for r in knowledge.rules}
        level = options.resource_level
        self._titles = {r.id: r.title_at(level) for r in knowledge.rules}
        self._descriptions = {r.id: r.description_at(level) for r in knowledge.rules}
        # The parts of a card that are the same for every patient, built once: cards share them (never mutated).
        self._sources = {r.id: _source(r) for r in knowledge.rules}
        self._links = {r.id: self._static_links(r) for r in knowledge.rules}
        self._offered = {r.id: tuple(s for s in r.suggestions if s.offered_at(level)) for r in knowledge.rules}

    def fire(self, ev: Evaluation, hook_instance: str = "", snoozes: Iterable[Snooze] = ()) -> list[FiredRule]:
        if not self._frame.in_scope(ev):
            return self._out_of_scope(ev, hook_instance)
        active = {s.rule_id: s for s in snoozes if s.until > ev.now}
        shared = TemplateValues(ev, self.vocabulary.values)
        closing = _Closing(self._frame, ev)
        fired: list[FiredRule] = []
        silenced: list[tuple[Rule, Snooze]] = []
        for rule in self.rules:
            evidence = self.fires(rule, ev)
            if evidence is None:
                continue
            snooze = active.get(rule.id)
            if snooze is not None and self._snoozable(rule, ev):
                silenced.append((rule, snooze))
                continue
            fired.append(self._card(rule, ev, evidence, self.values_for(ev, evidence, shared), hook_instance,
                                    closing))
        return self._rank_and_cap(fired, ev, silenced)

    # -- what a subclass may change ---------------------------------------------------------------------------
    def fires(self, rule: Rule, ev: Evaluation) -> list[Evidence] | None:
        """The evidence the rule fires on, or None when it does not fire."""
        return rule_evidence(rule, ev)

    def values_for(self, ev: Evaluation, evidence: list[Evidence], shared: TemplateValues) -> TemplateValues:
        """The template values of one card: by default those every card of the request shares."""
        return shared

    def offer(self, rule: Rule, s: SuggestionRule, ev: Evaluation, evidence: list[Evidence],
              values: TemplateValues) -> list[Offer]:
        """What one of the rule's suggestions offers: by default its ActivityDefinition drafted for the patient,
        giving the conditions of the evidence as its reason; label and descriptions rendered with `values`."""
        resource = build_draft(s.activity, patient_id=ev.patient_id, reasons=self._frame.draft_reasons(ev, evidence),
                               now=ev.now, note=f"Drafted by mbc-cds rule {rule.id}; review before signing.",
                               task_description=render(s.task_description, values))
        label = render(s.label, values)
        return [Offer(label, (s.id,), {"type": "create", "description": render(s.description, values) or label,
                                       "resource": resource})]

    def recommended(self, rule: Rule, offers: Sequence[Offer]) -> bool:
        """Whether the card marks its suggestions recommended: by default when its rule has one suggestion."""
        return len(rule.suggestions) == 1

    # -- one path for every hook ------------------------------------------------------------------------------
    def _snoozable(self, rule: Rule, ev: Evaluation) -> bool:
        """Whether an override may silence the rule (clinical-rules section 6): the overview and the
        could-not-read card never are."""
        if rule.uncapped:
            return False
        priority = rule.priority_fn(ev) if rule.priority_fn else rule.priority
        # A critical card is never snoozed: the override only quietens what can wait.
        return PRIORITY_TO_INDICATOR.get(priority, "info") != "critical"

    def _out_of_scope(self, ev: Evaluation, hook_instance: str) -> list[FiredRule]:
        evidence = list(self._frame.out_of_scope_evidence(ev))
        if not evidence:
            return []
        rule = next((r for r in self.rules if r.tier == "uncapped"), None)
        if rule is None:
            return []
        return [self._card(rule, ev, evidence, TemplateValues(ev, self.vocabulary.values), hook_instance)]

    def _rank_and_cap(self, fired: list[FiredRule], ev: Evaluation,
                      silenced: Sequence[tuple[Rule, Snooze]] = ()) -> list[FiredRule]:
        fired.sort(key=lambda f: (INDICATOR_RANK[f.indicator], f.rule.order))
        _one_draft_per_target(fired)
        # Emergency mode: while a critical card stands, info cards wait (listed on the overview, not lost).
        emergency = any(f.indicator == "critical" for f in fired)
        cappable = [f for f in fired if f.indicator == "info" and not f.rule.uncapped]
        # The overview and "could not read" are never capped: silence must not hide missing data.
        cap = min(self.options.info_card_cap, max(0, self.options.card_budget - (len(fired) - len(cappable))))
        kept: list[FiredRule] = []
        held: list[FiredRule] = []
        dropped: list[FiredRule] = []
        info = 0
        for f in fired:
            if f.indicator == "info" and not f.rule.uncapped:
                if emergency:
                    held.append(f)
                    continue
                info += 1
                if info > cap:
                    dropped.append(f)
                    continue
            kept.append(f)
        overview = next((f for f in kept if f.rule.tier == "overview"), None)
        if overview is not None:
            parts: list[str] = []
            others = [f"- {f.card['summary']}" for f in kept if f is not overview]
            if others:
                parts.append("**Other cards for this patient**\n" + "\n".join(others))
            if held:
                parts.append("**Held back while the emergency is dealt with** (open the patient view again "
                             "afterwards)\n" + "\n".join(f"- {f.card['summary']}" for f in held))
            if dropped:
                parts.append("**Also due, not shown as cards** (info card limit)\n"
                             + "\n".join(f"- {f.card['summary']}" for f in dropped))
            if silenced:
                parts.append("**Snoozed by clinician feedback**\n" + "\n".join(
                    f"- {rule.display}: snoozed until {s.until.date().isoformat()} "
                    f"({OVERRIDE_LABELS.get(s.reason, s.reason).lower()})" for rule, s in silenced))
            if parts:
                overview.card["detail"] += "\n\n" + "\n\n".join(parts)
        return kept

    def _card(self, rule: Rule, ev: Evaluation, evidence: list[Evidence], values: TemplateValues,
              hook_instance: str, closing: _Closing | None = None) -> FiredRule:
        priority = rule.priority_fn(ev) if rule.priority_fn else rule.priority
        indicator = PRIORITY_TO_INDICATOR.get(priority, "info")
        card_uuid = _stable_uuid(self.options.uuid_key, hook_instance or uuid.uuid4().hex, ev.patient_id, rule.id)
        suggestions, withheld = self._suggestions(rule, ev, evidence, values, card_uuid)
        opening, why = self._opening(rule, ev, evidence, closing or _Closing(self._frame, ev))
        detail = self._detail(rule, opening, values, withheld)
        card: Card = {
            "uuid": card_uuid,
            "summary": _summary(render(self._titles[rule.id], values)),
            "detail": detail,
            "indicator": indicator,
            "source": self._sources[rule.id],
        }
        if suggestions:
            card["suggestions"] = suggestions
            card["selectionBehavior"] = rule.selection_behavior
        card["overrideReasons"] = OVERRIDE_REASONS
        links = self._links[rule.id]
        if links:
            card["links"] = links
        return FiredRule(rule, indicator, card, why)

    def _static_links(self, rule: Rule) -> list[Link]:
        links: list[Link] = [{"label": c.label, "url": c.url, "type": "absolute"} for c in rule.citations if c.url]
        if rule.link == "acp-app" and self.options.acp_app_url:
            links.append({"label": "Open the advance care planning app", "url": self.options.acp_app_url,
                          "type": "smart"})
        if rule.link == "assessment-form" and self.options.assessment_form_url:
            links.append({"label": "Open the assessment form", "url": self.options.assessment_form_url,
                          "type": "smart"})
        return list({link["url"]: link for link in links}.values())

    def _opening(self, rule: Rule, ev: Evaluation, evidence: list[Evidence],
                 closing: _Closing) -> tuple[list[str], tuple[Evidence, ...]]:
        """The card's opening sections as Markdown lines, and what it rests on (its first list): the overview's
        sections from the frame, or another card's own evidence closed by the frame's subject and status."""
        if rule.tier == "overview":
            sections = self._frame.overview(ev)
            lines = [line for i, sec in enumerate(sections)
                     for line in _section(sec.title, sec.text, _unique(sec.lines), gap=i > 0)]
            return lines, tuple(_unique(sections[0].lines)) if sections else ()
        subject, status = closing()
        why = (*_unique(evidence), subject)
        return _section("Why", None, (*why, status)), why

    def _detail(self, rule: Rule, opening: list[str], values: TemplateValues, withheld: list[Evidence]) -> str:
        parts = list(opening)
        description = self._descriptions[rule.id]
        if description:
            parts.append("\n" + render(description, values))
        if withheld:
            # Allergy / renal checks (rules v2): say which draft was held back and why, naming the allergy.
            parts.append("\n**Draft withheld**")
            parts.extend(_evidence_lines(withheld))
        parts.append(self._source_lines[rule.id])
        return "\n".join(parts)

    def _suggestions(self, rule: Rule, ev: Evaluation, evidence: list[Evidence], values: TemplateValues,
                     card_uuid: str) -> tuple[list[Suggestion], list[Evidence]]:
        """The rule's offers whose conditions hold, less the drafts the frame withholds (and why)."""
        kept: list[Offer] = []
        withheld: list[Evidence] = []
        for s in self._offered[rule.id]:
            if any(cond(ev) is None for cond in s.conditions):
                continue
            for offer in self.offer(rule, s, ev, evidence, values):
                resource = offer.action.get("resource")
                blocked = self._frame.draft_withheld(ev, resource) \
                    if offer.action["type"] == "create" and resource is not None else []
                if blocked:
                    withheld.extend(b for b in blocked if b not in withheld)
                    continue
                kept.append(offer)
        recommended = self.recommended(rule, kept)
        return [{"label": o.label[:200], "uuid": _stable_uuid(self.options.uuid_key, card_uuid, *o.key),
                 "isRecommended": recommended, "actions": [o.action]} for o in kept], withheld


def _target(resource: FhirResource) -> str:
    canonical = resource.get("instantiatesCanonical")
    if isinstance(canonical, list):
        canonical = canonical[0] if canonical else None
    return str(canonical or resource.get("resourceType"))


def _one_draft_per_target(fired: list[FiredRule]) -> None:
    """A referral or drug draft appears once, on the highest-ranked card that offers it (section 6); the
    later cards keep naming it in their text."""
    seen: set[str] = set()
    for f in fired:
        suggestions = f.card.get("suggestions")
        if not suggestions:
            continue
        keep = []
        for s in suggestions:
            targets = {_target(a["resource"]) for a in s.get("actions") or [] if isinstance(a.get("resource"), dict)}
            if targets & seen:
                continue
            seen |= targets
            keep.append(s)
        if keep:
            f.card["suggestions"] = keep
        else:
            f.card.pop("suggestions", None)
            f.card.pop("selectionBehavior", None)
