"""The service layer: what a hook does, independent of how it was called.

- :mod:`app.service.outcome`: `HookOutcome`, the cards, fired rules and evaluation of one call
- :mod:`app.service.evaluate`: `RecordEvaluator`, the pure "evaluate this record" (no HTTP client)
- :mod:`app.service.handle`: `HookHandler`, the async "handle this hook request" (prefetch through the FHIR
  client, then the evaluator)
- :mod:`app.service.factory`: both, built from the settings in one place
"""
