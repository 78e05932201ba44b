"""Advance care planning: on record, complete, stale."""

from __future__ import annotations

from app.clinical.evaluation import Evaluation, Evidence
from app.clinical.facts import Dated
from app.clinical.fhirtime import fmt_date
from app.clinical.predicates.base import Findings, dated_evidence, newest


def acp_on_record(ev: Evaluation, _: str | None) -> Findings:
    items = ev.facts.acp_items()
    return [dated_evidence("advance care planning on record", items)] if items else None


def acp_code_status_and_place_of_death(ev: Evaluation, _: str | None) -> Findings:
    code_status = ev.facts.acp.get("code-status")
    place = ev.facts.acp.get("place-of-death")
    if not code_status or not place:
        return None
    return [dated_evidence("code status on record", code_status),
            dated_evidence("preferred place of death on record", place)]


def newest_acp(ev: Evaluation) -> Dated | None:
    return newest(ev.facts.acp_items())


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
