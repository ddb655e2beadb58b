"""The HTTP API for chatbots: ``create_app`` (``interfaces.http.app``) over the search core."""

from interfaces.http.app import create_app

__all__ = ["create_app"]
