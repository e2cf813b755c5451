from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def audit_signing_key_check(app_configs, **kwargs):
    if settings.AISPM_AUDIT_SIGNING_KEY:
        return []
    return [
        Warning(
            "No audit signing key: checkpoints are not made and the audit chain is unanchored, "
            "so a database owner could rewrite or truncate it undetected.",
            hint="Set AISPM_AUDIT_SIGNING_KEY (base64 of a 32-byte seed) or "
            "AISPM_AUDIT_SIGNING_KEY_FILE, and AISPM_AUDIT_WITNESS_URL.",
            id="audit.W001",
        )
    ]
