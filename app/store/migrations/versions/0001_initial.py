"""Initial tables: invocation audit, issued cards, feedback, seen JWT ids.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invocation",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("hook_instance", sa.String(128), nullable=False, index=True),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("patient_hash", sa.String(64), nullable=False, index=True),
        sa.Column("rule_ids", sa.JSON, nullable=False),
        sa.Column("card_count", sa.Integer, nullable=False),
        sa.Column("phase", sa.String(16), nullable=True),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("problems", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )
    op.create_table(
        "issued_card",
        sa.Column("uuid", sa.String(64), primary_key=True),
        sa.Column("rule_id", sa.String(64), nullable=False, index=True),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("hook_instance", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("service", sa.String(64), nullable=False, index=True),
        sa.Column("card_uuid", sa.String(64), nullable=False, index=True),
        sa.Column("rule_id", sa.String(64), nullable=True, index=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("override_code", sa.String(64), nullable=True),
        sa.Column("override_display", sa.String(200), nullable=True),
        sa.Column("has_comment", sa.Boolean, nullable=False),
        sa.Column("accepted_suggestions", sa.JSON, nullable=False),
        sa.Column("outcome_timestamp", sa.String(40), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("service", "card_uuid", "outcome", "outcome_timestamp", name="uq_feedback_once"),
    )
    op.create_table(
        "seen_jti",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("expires_at", sa.Integer, nullable=False, index=True),
    )


def downgrade() -> None:
    for table in ("seen_jti", "feedback", "issued_card", "invocation"):
        op.drop_table(table)
