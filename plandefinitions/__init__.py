"""Clinical knowledge as FHIR R4 artifacts: PlanDefinitions, ActivityDefinitions, the rule CodeSystem, Library."""

from plandefinitions.loader import Artifacts, load_artifacts

__all__ = ["Artifacts", "load_artifacts"]
