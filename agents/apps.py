from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents"

    def ready(self):
        from . import schema  # noqa: F401 - registers the OpenAPI auth scheme
