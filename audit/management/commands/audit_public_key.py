from django.core.management.base import BaseCommand, CommandError

from audit import chainhash, checkpoints


class Command(BaseCommand):
    help = (
        "Print the public key that verifies audit checkpoints (PEM), for auditors and "
        "python -m audit.offline_verify. Its SHA-256 fingerprint goes to stderr."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--raw", action="store_true", help="print base64 of the 32 raw bytes instead"
        )

    def handle(self, *args, raw=False, **options):
        key = checkpoints.public_key()
        if key is None:
            raise CommandError("no signing key: set AISPM_AUDIT_SIGNING_KEY or _FILE")
        if raw:
            import base64

            self.stdout.write(base64.b64encode(chainhash.public_key_bytes(key)).decode())
        else:
            self.stdout.write(chainhash.public_key_pem(key), ending="")
        self.stderr.write(f"fingerprint (SHA-256): {chainhash.fingerprint(key)}")
