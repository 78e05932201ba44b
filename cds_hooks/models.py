"""CDS Hooks 2.0 wire models (pydantic v2).

Field names are the JSON names of the specification (camelCase), so a model's attributes read like the
wire format.  Input models (request, feedback) accept unknown fields (extensions, newer spec versions);
output models (response, card and parts) forbid them so that a typo fails where the card is built.

Nothing here knows about any clinical domain.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from cds_hooks.cards import SUMMARY_MAX
from cds_hooks.hooks import HOOK_CONTEXT_REQUIRED, USER_ID_TOKENS
from cds_hooks.urlpolicy import has_control_chars

__all__ = [
    "AcceptedSuggestion",
    "Action",
    "Card",
    "Coding",
    "FeedbackItem",
    "FeedbackRequest",
    "FhirAuthorization",
    "HookRequest",
    "HookResponse",
    "Link",
    "OverrideReason",
    "Source",
    "Suggestion",
    "SystemAction",
]


class _In(BaseModel):
    """Models received from a CDS Client: unknown fields are kept (extensions, later spec versions)."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=False)


class _Out(BaseModel):
    """Models this service emits: unknown fields are a programming error."""

    model_config = ConfigDict(extra="forbid")


class Coding(BaseModel):
    """A FHIR Coding as used by CDS Hooks (source.topic, overrideReasons, overrideReason.reason)."""

    model_config = ConfigDict(extra="allow")

    system: str | None = None
    code: str | None = None
    display: str | None = None
    version: str | None = None
    userSelected: bool | None = None


# --------------------------------------------------------------------------------------------------------
# Request
# --------------------------------------------------------------------------------------------------------


class FhirAuthorization(_In):
    """`fhirAuthorization`: the OAuth 2.0 bearer token for the client's FHIR server.

    The token is a SecretStr so that it never appears in repr(), logs or model dumps; read it with
    `access_token.get_secret_value()`.  The spec makes every field but `patient` required; only the token
    itself is enforced here so that a slightly incomplete object from an EHR still works.
    """

    access_token: SecretStr
    token_type: str = "Bearer"
    expires_in: int | None = None
    scope: str | None = None
    subject: str | None = None
    patient: str | None = None

    @field_validator("access_token")
    @classmethod
    def _token_not_empty(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().strip():
            raise ValueError("access_token must not be empty")
        return v

    def bearer(self) -> str:
        """The token value (never log it)."""
        return self.access_token.get_secret_value()


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL")
    return value


_REFERENCE_RE = re.compile(r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")


class HookRequest(_In):
    """The body POSTed by a CDS Client to `{base}/cds-services/{id}`."""

    hook: str = Field(min_length=1)
    hookInstance: str = Field(min_length=1)
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    # key present with None == "the client has no data"; key absent == "not satisfied, fetch it"
    prefetch: dict[str, Any] | None = None

    @field_validator("hookInstance")
    @classmethod
    def _instance_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("hookInstance must not be blank")
        return v

    @field_validator("fhirServer")
    @classmethod
    def _server_url(cls, v: str | None) -> str | None:
        if v is None:
            return None
        # CR/LF and other controls (even trailing ones) would split a log line or a header wherever the URL
        # travels next: refused, not stripped.
        if has_control_chars(v):
            raise ValueError("must not contain control characters")
        v = v.strip()
        if not v:
            return None
        return _check_http_url(v)

    @model_validator(mode="after")
    def _check(self) -> HookRequest:
        if self.fhirAuthorization is not None and not self.fhirServer:
            raise ValueError("fhirServer is required when fhirAuthorization is given")
        required = HOOK_CONTEXT_REQUIRED.get(self.hook, ())
        if "patientId" in required:
            pid = self.context.get("patientId")
            if not isinstance(pid, str) or not pid.strip():
                raise ValueError(f"context.patientId (non-empty string) is required for {self.hook}")
        if "draftOrders" in required:
            drafts = self.context.get("draftOrders")
            if not isinstance(drafts, dict) or drafts.get("resourceType") != "Bundle":
                raise ValueError(f"context.draftOrders (a FHIR Bundle) is required for {self.hook}")
        selections = self.context.get("selections")
        if self.hook == "order-select" and selections is not None:
            if not isinstance(selections, list) or not all(
                    isinstance(s, str) and _REFERENCE_RE.match(s) for s in selections):
                raise ValueError("context.selections must be a list of references like 'MedicationRequest/123'")
        return self

    # -- helpers ---------------------------------------------------------------------------------------
    def patient_id(self) -> str | None:
        """`context.patientId` when it is a non-empty string."""
        pid = self.context.get("patientId")
        return pid if isinstance(pid, str) and pid.strip() else None

    def encounter_id(self) -> str | None:
        """`context.encounterId` when it is a non-empty string."""
        eid = self.context.get("encounterId")
        return eid if isinstance(eid, str) and eid.strip() else None

    def draft_orders(self) -> dict[str, Any] | None:
        """`context.draftOrders` (order-select / order-sign): the Bundle of draft orders, when one was sent."""
        drafts = self.context.get("draftOrders")
        return drafts if isinstance(drafts, dict) else None

    def selections(self) -> list[str] | None:
        """`context.selections` (order-select): the references of the newly selected drafts, or None."""
        sel = self.context.get("selections")
        return [s for s in sel if isinstance(s, str)] if isinstance(sel, list) else None

    def user_id(self) -> str | None:
        """`context.userId` ("Practitioner/123") when it is a non-empty string."""
        uid = self.context.get("userId")
        return uid if isinstance(uid, str) and uid.strip() else None

    def user_token(self, token: str) -> str | None:
        """Value of a user prefetch token (`userPractitionerId`, ...) derived from `context.userId`:
        "Practitioner/123" gives "123" for `userPractitionerId` and None for the other three."""
        rtype = USER_ID_TOKENS.get(token)
        uid = self.user_id()
        if rtype is None or uid is None:
            return None
        head, sep, tail = uid.strip().partition("/")
        if sep and head == rtype and tail and "/" not in tail:
            return tail
        return None

    def access_token(self) -> str | None:
        """The FHIR bearer token if one was given (never log it)."""
        return self.fhirAuthorization.bearer() if self.fhirAuthorization else None


# --------------------------------------------------------------------------------------------------------
# Response
# --------------------------------------------------------------------------------------------------------


class Source(_Out):
    label: str = Field(min_length=1)
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None

    @field_validator("url", "icon")
    @classmethod
    def _abs_url(cls, v: str | None) -> str | None:
        return None if v is None else _check_http_url(v)


class Action(_Out):
    """A suggestion action or a system action."""

    type: Literal["create", "update", "delete"]
    description: str = Field(min_length=1)
    resource: dict[str, Any] | None = None
    resourceId: str | None = None
    extension: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> Action:
        if self.type in ("create", "update"):
            if not self.resource or not isinstance(self.resource.get("resourceType"), str):
                raise ValueError(f"a {self.type} action needs a FHIR resource with resourceType")
        elif not self.resourceId and not self.resource:
            raise ValueError("a delete action needs resourceId")
        return self


class SystemAction(Action):
    """An Action returned in `systemActions` (same schema as a suggestion action)."""


class Suggestion(_Out):
    label: str = Field(min_length=1)
    uuid: str | None = None
    isRecommended: bool | None = None
    actions: list[Action] | None = None
    extension: dict[str, Any] | None = None


class Link(_Out):
    label: str = Field(min_length=1)
    url: str = Field(min_length=1)
    type: Literal["absolute", "smart"]
    appContext: str | None = None
    extension: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> Link:
        if self.appContext is not None and self.type != "smart":
            raise ValueError("appContext is only valid for smart links")
        return self


class Card(_Out):
    uuid: str | None = None
    summary: str = Field(min_length=1, max_length=SUMMARY_MAX)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None
    extension: dict[str, Any] | None = None

    @field_validator("overrideReasons")
    @classmethod
    def _reasons_have_display(cls, v: list[Coding] | None) -> list[Coding] | None:
        for c in v or ():
            if not c.display or not c.display.strip():
                raise ValueError("every overrideReasons Coding needs a display")
        return v

    @model_validator(mode="after")
    def _check(self) -> Card:
        if self.suggestions and self.selectionBehavior is None:
            raise ValueError("a card with suggestions must carry selectionBehavior")
        return self


class HookResponse(_Out):
    cards: list[Card] = Field(default_factory=list)
    systemActions: list[SystemAction] | None = None


# --------------------------------------------------------------------------------------------------------
# Feedback
# --------------------------------------------------------------------------------------------------------


class AcceptedSuggestion(_In):
    id: str = Field(min_length=1)


class OverrideReason(_In):
    """`feedback[].overrideReason`: the reason Coding the user picked and/or a free-text comment."""

    reason: Coding | None = None
    userComment: str | None = None


class FeedbackItem(_In):
    card: str = Field(min_length=1)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = None
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: str

    @field_validator("outcomeTimestamp")
    @classmethod
    def _iso(cls, v: str) -> str:
        _parse_iso(v)
        return v

    @model_validator(mode="after")
    def _check(self) -> FeedbackItem:
        if self.outcome == "accepted" and not self.acceptedSuggestions:
            raise ValueError("acceptedSuggestions is required when outcome is accepted")
        return self

    def timestamp(self) -> datetime:
        """outcomeTimestamp as a datetime (timezone-aware when the string carries an offset or Z)."""
        return _parse_iso(self.outcomeTimestamp)


# One post answers one hook's cards (a handful); the cap keeps a single post from writing thousands of rows.
MAX_FEEDBACK_ITEMS = 100


class FeedbackRequest(_In):
    feedback: list[FeedbackItem] = Field(min_length=1, max_length=MAX_FEEDBACK_ITEMS)


def _parse_iso(value: str) -> datetime:
    v = value.strip()
    if "T" not in v and " " not in v:
        raise ValueError("outcomeTimestamp must be an ISO 8601 date-time")
    try:
        return datetime.fromisoformat(v)  # 3.11 accepts 'Z' and fractional seconds
    except ValueError as exc:
        raise ValueError("outcomeTimestamp must be an ISO 8601 date-time") from exc
