"""FHIR data as the JSON a record arrives in, for the code look-ups and the clinical code that reads it.

A record is not validated before it is read, so a value inside it may be anything JSON can hold: these types say
so (`object`, never `Any`), and every reader narrows a value with `isinstance` before it uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

# One value read out of a record: a string, number, boolean, null, list or object, unchecked.
JsonValue: TypeAlias = object
# A JSON object as parsed: a FHIR resource, a CodeableConcept, a Coding... Its values are unchecked.
JsonObject: TypeAlias = Mapping[str, JsonValue]
# A CodeableConcept (`{"coding": [...], "text": ...}`) as raw JSON, or whatever stood in its place.
CodeableConceptJson: TypeAlias = JsonObject

__all__ = ["CodeableConceptJson", "JsonObject", "JsonValue"]
