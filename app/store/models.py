"""Tables. No clinical text is stored: ids, rule ids, hashes, counts and times only."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, Integer, String, UniqueConstraint
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
    """Which rule a card uuid came from, so that feedback can be counted per rule."""

    __tablename__ = "issued_card"

    uuid: Mapped[str] = mapped_column(String(64), primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(64), index=True)
    service: Mapped[str] = mapped_column(String(64))
    hook_instance: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Feedback(Base):
    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("service", "card_uuid", "outcome", "outcome_timestamp",
                                       name="uq_feedback_once"),)

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
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SeenJti(Base):
    """JWT ids seen from EHRs, shared by all workers so a replay is caught whichever worker gets it."""

    __tablename__ = "seen_jti"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[int] = mapped_column(Integer, index=True)


ALL_TABLES = (Invocation.__table__, IssuedCard.__table__, Feedback.__table__, SeenJti.__table__)
