"""HTTP routes: thin adapters between FastAPI and the service layer (`app.service`), the store and the knowledge."""
