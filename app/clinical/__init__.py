"""Clinical layer: FHIR resources -> named patient facts, phase and pain ladder. Knows nothing of HTTP."""
