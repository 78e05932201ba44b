"""The clinical frame around every card, as the engine is handed it: what the engine asks the clinical layer and
lays out, without deciding any of it.

The engine applies rules and renders cards; whether the rules speak for a patient at all, what the overview card
says, what closes another card's "Why", which references a draft gives as its reason and what withholds a draft
are clinical judgements. They come in with the vocabulary (app.engine.vocabulary.Vocabulary.frame); the
service's frame is app.clinical.card_frame.CARD_FRAME. The shapes are Protocols so that clinical code supplies
them without importing the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from app.clinical.evaluation import Evaluation, Evidence
from cds_hooks.cards import FhirResource


class Section(Protocol):
    """A titled block of a card's detail: shown as the bold title, the text after it (None: nothing, not even a
    space), then one bullet per distinct line."""

    @property
    def title(self) -> str: ...

    @property
    def text(self) -> str | None: ...

    @property
    def lines(self) -> Sequence[Evidence]: ...


class CardFrame(Protocol):
    def in_scope(self, ev: Evaluation) -> bool:
        """Whether the rules apply to this patient at all."""
        ...

    def out_of_scope_evidence(self, ev: Evaluation) -> Sequence[Evidence]:
        """For a patient outside scope, the lines of what could not be read when the could-not-read card must
        still be shown (silence would read as "nothing to do" for a record that could not be judged); else none."""
        ...

    def overview(self, ev: Evaluation) -> Sequence[Section]:
        """The overview card's sections, in order; the first one's lines are what the card rests on."""
        ...

    def subject(self, ev: Evaluation) -> Evidence:
        """What every other card concerns: the last line of its "Why"."""
        ...

    def status(self, ev: Evaluation) -> Evidence:
        """The patient's state, the line shown under another card's "Why"."""
        ...

    def draft_reasons(self, ev: Evaluation, evidence: Sequence[Evidence]) -> list[str]:
        """The references a draft gives as its reason, from the evidence its rule fired on."""
        ...

    def draft_withheld(self, ev: Evaluation, resource: FhirResource) -> list[Evidence]:
        """Why a drafted resource must not be offered to this patient (empty: offer it)."""
        ...
