from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Approvals"

    def ready(self):
        from audit.verifiers import verifier_register

        from .passkeys import signatures_verify

        verifier_register("approvals", signatures_verify)
