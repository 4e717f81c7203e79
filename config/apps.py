from django.apps import AppConfig


class ProjectConfig(AppConfig):
    """The composition root as an app, for its tasks and management commands."""

    name = "config"
