"""Errors of the ML layer, with messages that say what to do next."""

from __future__ import annotations

from nofx.errors import NofxError


class InsufficientDataError(NofxError):
    """Not enough (or not varied enough) data to train or evaluate a model."""

    code = "insufficient-data"
    http_status = 422


class ModelNotFoundError(NofxError):
    """No model version carries the requested alias yet."""

    code = "model-not-found"
    http_status = 404
