"""What CDS Hooks 2.0 says about its hooks and their context, as plain data: importable without pydantic
(the command line builds its options from it)."""

from __future__ import annotations

__all__ = ["HOOK_CONTEXT_REQUIRED", "ORDER_HOOKS", "USER_ID_TOKENS"]

# Prefetch tokens filled from `context.userId`, and the resource type each stands for.
USER_ID_TOKENS: dict[str, str] = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}

# The hooks whose context carries draft orders (`context.draftOrders`).
ORDER_HOOKS = ("order-select", "order-sign")

# Context fields a hook cannot be answered without (CDS Hooks 2.0 hook definitions). `userId` is required by the
# specification too, but nothing here depends on it, so a client that leaves it out is still answered.
HOOK_CONTEXT_REQUIRED: dict[str, tuple[str, ...]] = {
    "patient-view": ("patientId",),
    "order-select": ("patientId", "draftOrders"),
    "order-sign": ("patientId", "draftOrders"),
}
