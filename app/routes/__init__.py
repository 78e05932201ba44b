"""HTTP routes: thin adapters between FastAPI and the hook processor, store and knowledge."""
