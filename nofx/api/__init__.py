"""The HTTP API (FastAPI): ``nofx.api.app.create_app`` builds it."""
