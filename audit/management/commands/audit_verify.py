import os
import time

from django.core.management.base import BaseCommand, CommandError

from audit import services, verifiers


class Command(BaseCommand):
    help = (
        "Seal pending audit events, then recompute the SHA-256 chain. Exits 0 with the "
        "event count and head hash when intact; exits 1 naming the first broken event."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--from", dest="from_id", type=int, help="start at this event id (trusting it)"
        )
        parser.add_argument(
            "--no-seal", action="store_true", help="verify only what is already sealed"
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=os.cpu_count() or 1,
            help="processes verifying seq ranges in parallel (PostgreSQL; default: CPUs)",
        )

        parser.add_argument(
            "--approvals",
            action="store_true",
            help="also re-derive each passkey-signed approval's challenge and check its "
            "signature; exits 1 naming every approval that does not match",
        )

    def handle(self, *args, from_id=None, no_seal=False, workers=1, approvals=False, **options):
        if not no_seal:
            while services.audit_seal():
                pass
        started = time.monotonic()
        if from_id is None:
            report = services.chain_verify_parallel(workers=workers)
        else:
            report = services.chain_verify(from_id=from_id)
        elapsed = time.monotonic() - started
        services.audit_verification_record(report=report, duration_ms=int(elapsed * 1000))
        if not report.ok:
            raise CommandError(
                f"audit chain broken at event {report.first_broken_id}: {report.problem} "
                f"({report.events_checked} events verified before it)"
            )
        rate = report.events_checked / elapsed if elapsed > 0 else 0
        self.stdout.write(
            f"audit chain intact: {report.events_checked} events, "
            f"head {report.head_hash or '(empty)'} (seq {report.head_seq}); "
            f"{rate:,.0f} events/s"
        )
        if approvals:
            self._verify_approvals()

    def _verify_approvals(self):
        checked, problems = verifiers.verifier_run("approvals")
        for problem in problems:
            self.stderr.write(f"signed approval does not verify: {problem}")
        if problems:
            raise CommandError(f"{len(problems)} of {checked} signed approvals do not verify")
        self.stdout.write(f"signed approvals verified: {checked}")
