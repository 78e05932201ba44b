"""WHO analgesic ladder: current step from active analgesics, severity from the latest 0-10 score."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from app.clinical.facts import PatientFacts
from app.clinical.thresholds import PAIN_MODERATE, PAIN_RISE, PAIN_SEVERE

Severity = Literal["none", "mild", "moderate", "severe", "unknown"]
STEP_NAMES = {0: "no analgesic", 1: "non-opioid", 2: "weak opioid", 3: "strong opioid"}
_NEXT_LABEL = {
    1: "a non-opioid (paracetamol or an NSAID)",
    2: "a weak opioid or low-dose strong opioid",
    3: "a strong opioid (morphine first line)",
}
_SEVERITY_STEP = {"mild": 1, "moderate": 2, "severe": 3}


def severity_of(score: float | None) -> Severity:
    if score is None:
        return "unknown"
    if score <= 0:
        return "none"
    if score < PAIN_MODERATE:
        return "mild"
    if score < PAIN_SEVERE:
        return "moderate"
    return "severe"


@dataclass(frozen=True, slots=True)
class PainStatus:
    step: int
    severity: Severity
    score: float | None
    when: datetime | None
    ref: str | None
    previous: float | None
    target_step: int | None       # the ladder step the pain calls for, when a step-up is indicated

    @property
    def rising(self) -> bool:
        return self.score is not None and self.previous is not None and self.score - self.previous >= PAIN_RISE

    @property
    def step_up(self) -> bool:
        return self.target_step is not None

    @property
    def uncontrolled_on_strong_opioid(self) -> bool:
        return self.step == 3 and (self.severity == "severe" or self.rising)

    def next_label(self) -> str:
        return _NEXT_LABEL[self.target_step] if self.target_step else "no change"

    def next_short(self) -> str:
        return STEP_NAMES[self.target_step] if self.target_step else "no change"


def current_step(facts: PatientFacts) -> int:
    if facts.on_drug("strong-opioid"):
        return 3
    if facts.on_drug("weak-opioid"):
        return 2
    if facts.on_drug("non-opioid-analgesic"):
        return 1
    return 0


def pain_status(facts: PatientFacts) -> PainStatus:
    step = current_step(facts)
    latest = facts.latest("pain-score", facts.acute_window)
    score = latest.value if latest else None
    severity = severity_of(score)
    prev = facts.previous("pain-score") if latest else None
    target: int | None = None
    # Moderate pain on step 0-1 or severe pain on step 0-2 calls for the step that matches the severity.
    if (severity == "moderate" and step <= 1) or (severity == "severe" and step <= 2):
        target = max(step + 1, _SEVERITY_STEP[severity])
    return PainStatus(step, severity, score, latest.when if latest else None, latest.ref if latest else None,
                      prev.value if prev else None, target)
