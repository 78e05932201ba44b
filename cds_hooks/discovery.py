"""The discovery document (`GET {base}/cds-services`)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NotRequired, TypedDict

__all__ = ["DiscoveryDocument", "ServiceEntry", "ServiceDefinition", "discovery_document"]

_ID_RE = re.compile(r"^[A-Za-z0-9._~-]+$")  # one URL path segment, no escaping needed


class ServiceEntry(TypedDict):
    """One service in the discovery document, as JSON."""

    hook: str
    title: NotRequired[str]
    description: str
    id: str
    prefetch: NotRequired[dict[str, str]]
    usageRequirements: NotRequired[str]


class DiscoveryDocument(TypedDict):
    services: list[ServiceEntry]


@dataclass(frozen=True, slots=True)
class ServiceDefinition:
    """One CDS Service as listed by discovery; `prefetch` maps prefetch keys to templates."""

    id: str
    hook: str
    title: str | None
    description: str
    prefetch: dict[str, str] = field(default_factory=dict)
    usage_requirements: str | None = None

    def __post_init__(self) -> None:
        if not _ID_RE.match(self.id or ""):
            raise ValueError(f"service id {self.id!r} must be a plain URL path segment")
        if not self.hook:
            raise ValueError("hook is required")
        if not self.description:
            raise ValueError("description is required")
        for key, template in self.prefetch.items():
            if not key or not isinstance(template, str) or not template:
                raise ValueError(f"prefetch key {key!r} needs a non-empty template")

    def to_json(self) -> ServiceEntry:
        """The discovery entry with empty optional fields left out (CDS Hooks forbids null/empty)."""
        # Keys in the order the CDS Hooks specification lists them.
        out: ServiceEntry = ({"hook": self.hook, "title": self.title, "description": self.description, "id": self.id}
                             if self.title else {"hook": self.hook, "description": self.description, "id": self.id})
        if self.prefetch:
            out["prefetch"] = dict(self.prefetch)
        if self.usage_requirements:
            out["usageRequirements"] = self.usage_requirements
        return out


def discovery_document(services: Iterable[ServiceDefinition]) -> DiscoveryDocument:
    """`{"services": [...]}`; raises ValueError on a duplicate service id."""
    seen: set[str] = set()
    entries = []
    for svc in services:
        if svc.id in seen:
            raise ValueError(f"duplicate CDS service id {svc.id!r}")
        seen.add(svc.id)
        entries.append(svc.to_json())
    return {"services": entries}
