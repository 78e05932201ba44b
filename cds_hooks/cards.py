"""The CDS Hooks 2.0 card as the plain JSON dicts a service builds and returns (no validation, no cost at run time).

`cds_hooks.models` holds the pydantic models that validate the same shape (tests check every card against them);
these TypedDicts let the type checker follow a card from where it is built to where it is read. Optional fields are
NotRequired: a card leaves out a field it has no value for.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

__all__ = [
    "Action", "ActionType", "Card", "Coding", "FhirResource", "Indicator", "Link", "LinkType", "SelectionBehavior",
    "SUMMARY_MAX", "Source", "Suggestion",
]

# A card's summary is "<140-character" (CDS Hooks 2.0).
SUMMARY_MAX = 139
Indicator = Literal["info", "warning", "critical"]
SelectionBehavior = Literal["at-most-one", "any"]
ActionType = Literal["create", "update", "delete"]
LinkType = Literal["absolute", "smart"]
# A FHIR resource as JSON; its shape is FHIR's, checked with fhir.resources where it is built.
FhirResource = dict[str, Any]


class Coding(TypedDict):
    """A FHIR Coding: `source.topic`, and each of `overrideReasons` (which needs its display)."""

    code: str
    system: NotRequired[str]
    display: NotRequired[str]


class Source(TypedDict):
    label: str
    url: NotRequired[str]
    icon: NotRequired[str]
    topic: NotRequired[Coding]


class Action(TypedDict):
    type: ActionType
    description: str
    resource: NotRequired[FhirResource]      # create, update
    resourceId: NotRequired[str]             # delete: a relative reference ("ServiceRequest/abc")


class Suggestion(TypedDict):
    label: str
    uuid: NotRequired[str]
    isRecommended: NotRequired[bool]
    actions: NotRequired[list[Action]]


class Link(TypedDict):
    label: str
    url: str
    type: LinkType
    appContext: NotRequired[str]


class Card(TypedDict):
    summary: str
    indicator: Indicator
    source: Source
    uuid: NotRequired[str]
    detail: NotRequired[str]
    suggestions: NotRequired[list[Suggestion]]
    selectionBehavior: NotRequired[SelectionBehavior]
    overrideReasons: NotRequired[list[Coding]]
    links: NotRequired[list[Link]]
