"""Clinical knowledge as FHIR R4 artifacts: PlanDefinitions, ActivityDefinitions, the CodeSystems (rules; worklist
tiers), the Libraries (predicates; the data the rules read)."""

from plandefinitions.loader import Artifacts, load_artifacts

__all__ = ["Artifacts", "load_artifacts"]
