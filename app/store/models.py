"""Tables. No clinical text is stored: ids, rule ids, hashes, counts and times only."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Invocation(Base):
    __tablename__ = "invocation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    hook_instance: Mapped[str] = mapped_column(String(128), index=True)
    service: Mapped[str] = mapped_column(String(64))
    patient_hash: Mapped[str] = mapped_column(String(64), index=True)
    rule_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    card_count: Mapped[int] = mapped_column(Integer, default=0)
    phase: Mapped[str | None] = mapped_column(String(16), nullable=True)
    duration_ms: Mapped[float] = mapped_column(Float)
    status: Mapped[int] = mapped_column(Integer)
    problems: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class IssuedCard(Base):
    """Which rule a card uuid came from, to whom it was issued and for which (hashed) patient, so that feedback is
    accepted only from the client that received the card and an override can snooze that rule for the patient."""

    __tablename__ = "issued_card"

    uuid: Mapped[str] = mapped_column(String(64), primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(64), index=True)
    service: Mapped[str] = mapped_column(String(64))
    hook_instance: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Rows written before revision 0002 have none of these: feedback for them is refused (not issued to anyone).
    client: Mapped[str | None] = mapped_column(String(256), nullable=True)
    patient_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    indicator: Mapped[str | None] = mapped_column(String(16), nullable=True)
    suggestions: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)


class Feedback(Base):
    __tablename__ = "feedback"
    # One outcome per card and suggestion is counted (contract v2): one override per card, each suggestion accepted
    # once (outcome_key: "" for an override, the newly accepted suggestion ids for an accept).
    __table_args__ = (Index("uq_feedback_card", "service", "card_uuid", "outcome", "outcome_key", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service: Mapped[str] = mapped_column(String(64), index=True)
    card_uuid: Mapped[str] = mapped_column(String(64), index=True)
    rule_id: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))
    override_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    override_display: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Free-text userComment can hold patient data: it is not stored, only whether one was given.
    has_comment: Mapped[bool] = mapped_column(default=False)
    accepted_suggestions: Mapped[list[str]] = mapped_column(JSON, default=list)
    outcome_timestamp: Mapped[str] = mapped_column(String(40))
    outcome_key: Mapped[str] = mapped_column(String(512), default="", server_default="")
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Snooze(Base):
    """A rule silenced for one patient after an override (clinical-rules section 6): only the salted patient
    hash, the rule, the reason code and the end."""

    __tablename__ = "snooze"
    __table_args__ = (Index("ix_snooze_patient_until", "patient_hash", "until"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_hash: Mapped[str] = mapped_column(String(64))
    rule_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(64))
    until: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SeenJti(Base):
    """JWT ids seen from EHRs, shared by all workers so a replay is caught whichever worker gets it."""

    __tablename__ = "seen_jti"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[int] = mapped_column(Integer, index=True)


ALL_TABLES = (Invocation.__table__, IssuedCard.__table__, Feedback.__table__, Snooze.__table__, SeenJti.__table__)
