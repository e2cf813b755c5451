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


@register(Tags.security, deploy=True)
def audit_s3_witness_check(app_configs, **kwargs):
    """An s3:// witness: the bucket answers with these credentials and has Object Lock,
    without which whoever holds the bucket's keys can delete a checkpoint."""
    url = settings.AISPM_AUDIT_WITNESS_URL
    if not url.startswith("s3://"):
        return []
    from . import witness_s3

    try:
        bucket, _prefix = witness_s3.parse_url(url)
        s3 = witness_s3.client(settings.AISPM_AUDIT_WITNESS_S3_ENDPOINT)
        with witness_s3.errors(f"s3://{bucket}"):
            locked = witness_s3.object_lock_enabled(s3, bucket)
    except (witness_s3.S3ConfigError, witness_s3.S3WitnessError) as exc:
        return [
            Warning(
                f"The audit witness cannot be reached: {exc}",
                hint="Check AISPM_AUDIT_WITNESS_URL, AISPM_AUDIT_WITNESS_S3_ENDPOINT and the "
                "AWS credentials; until it answers, each checkpoint task fails.",
                id="audit.W002",
            )
        ]
    if locked:
        return []
    return [
        Warning(
            f"The audit witness bucket {bucket} has no Object Lock: anyone holding its "
            "credentials can delete or replace a checkpoint.",
            hint="Use a bucket created with Object Lock enabled (README: An S3 witness).",
            id="audit.W003",
        )
    ]
