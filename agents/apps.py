from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents"

    def ready(self):
        from . import receivers, schema  # noqa: F401 - connects receivers; the OpenAPI auth scheme
