"""Terminology for mbc-cds: FHIR R4 ValueSets (``terminology/valuesets/*.json``) and O(1) code lookups.

>>> from terminology import get_terminology
>>> t = get_terminology()
>>> sorted(t.concepts("http://hl7.org/fhir/sid/icd-10-cm", "C79.51"))
['metastasis-bone']
"""

from terminology.loader import (
    ICD10CM,
    ICDO3,
    LOCAL,
    LOINC,
    RXNORM,
    SNOMED,
    Terminology,
    TerminologyError,
    get_terminology,
    normalise_code,
)

__all__ = [
    "ICD10CM",
    "ICDO3",
    "LOCAL",
    "LOINC",
    "RXNORM",
    "SNOMED",
    "Terminology",
    "TerminologyError",
    "get_terminology",
    "normalise_code",
]
