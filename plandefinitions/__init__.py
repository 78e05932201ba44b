"""Clinical knowledge as FHIR R4 artifacts: PlanDefinitions, ActivityDefinitions, the rule CodeSystem, the Libraries
(predicates; the data the rules read)."""

from plandefinitions.loader import Artifacts, load_artifacts

__all__ = ["Artifacts", "load_artifacts"]
