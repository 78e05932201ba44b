"""CDS Hooks 2.0 protocol layer: wire models, serialization, discovery, prefetch templates and the
FHIR-server fallback.  No clinical knowledge lives in this package."""
