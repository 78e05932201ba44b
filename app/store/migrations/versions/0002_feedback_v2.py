"""Feedback v2: who a card was issued to, one outcome per card and suggestion, snoozes.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issued_card") as batch:
        batch.add_column(sa.Column("client", sa.String(256), nullable=True))
        batch.add_column(sa.Column("patient_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("indicator", sa.String(16), nullable=True))
        batch.add_column(sa.Column("suggestions", sa.JSON, nullable=True))
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("outcome_key", sa.String(512), nullable=False, server_default=""))
        # (service, card, outcome, timestamp) would refuse two suggestions of one card accepted in the same second
        batch.drop_constraint("uq_feedback_once", type_="unique")
    # Rows from before: keep the first outcome recorded per card and outcome (later ones were never meant to count).
    op.execute("DELETE FROM feedback WHERE id NOT IN (SELECT keep FROM "
               "(SELECT MIN(id) AS keep FROM feedback GROUP BY service, card_uuid, outcome) AS firsts)")
    op.create_index("uq_feedback_card", "feedback", ["service", "card_uuid", "outcome", "outcome_key"], unique=True)
    op.create_table(
        "snooze",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("patient_hash", sa.String(64), nullable=False),
        sa.Column("rule_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_snooze_patient_until", "snooze", ["patient_hash", "until"])


def downgrade() -> None:
    op.drop_index("ix_snooze_patient_until", table_name="snooze")
    op.drop_table("snooze")
    op.drop_index("uq_feedback_card", table_name="feedback")
    op.execute("DELETE FROM feedback WHERE id NOT IN (SELECT keep FROM (SELECT MIN(id) AS keep FROM feedback "
               "GROUP BY service, card_uuid, outcome, outcome_timestamp) AS firsts)")
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("outcome_key")
        batch.create_unique_constraint("uq_feedback_once", ["service", "card_uuid", "outcome", "outcome_timestamp"])
    with op.batch_alter_table("issued_card") as batch:
        for column in ("suggestions", "indicator", "patient_hash", "client"):
            batch.drop_column(column)
