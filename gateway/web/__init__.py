"""The HTTP surface: app factory, middlewares, views."""

from gateway.web.app import create_app, serving_app

__all__ = ["create_app", "serving_app"]
