import os
import time

from django.core.management.base import BaseCommand, CommandError

from audit import checkpoints, services, verifiers


class Command(BaseCommand):
    help = (
        "Seal pending audit events, then recompute the SHA-256 chain and hold it to every "
        "signed checkpoint. Exits 0 with the event count and head hash when intact; exits 1 "
        "naming the first broken event, or the checkpoint and seq that no longer hold."
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
            "--witness",
            metavar="URL",
            help="also compare the checkpoints with this witness (file:///dir/ or "
            "s3://bucket/prefix)",
        )
        parser.add_argument(
            "--archive",
            metavar="URL",
            help="also verify the archived segments in this directory (file:///dir/)",
        )

        parser.add_argument(
            "--approvals",
            action="store_true",
            help="also re-derive each passkey-signed approval's challenge and check its "
            "signature; exits 1 naming every approval that does not match",
        )

    def handle(
        self,
        *args,
        from_id=None,
        no_seal=False,
        workers=1,
        witness=None,
        archive=None,
        approvals=False,
        **options,
    ):
        if not no_seal:
            services.audit_seal_all()
        started = time.monotonic()
        report = checkpoints.evidence_verify(workers=workers, from_id=from_id)
        if report.ok and witness:
            report = self._compare_witness(report, witness)
        if report.ok and archive:
            report = self._verify_archive(report, archive)
        elapsed = time.monotonic() - started
        services.audit_verification_record(report=report, duration_ms=int(elapsed * 1000))
        if not report.ok:
            if report.anchor == "archive":
                raise CommandError(f"audit archive does not verify: {report.problem}")
            if report.anchor == "witness":
                raise CommandError(f"audit checkpoints do not match the witness: {report.problem}")
            if report.anchor == "broken":
                raise CommandError(f"audit chain does not match its checkpoints: {report.problem}")
            raise CommandError(
                f"audit chain broken at event {report.first_broken_id}: {report.problem} "
                f"({report.events_checked} events verified before it)"
            )
        rate = report.events_checked / elapsed if elapsed > 0 else 0
        self.stdout.write(
            f"audit chain intact: {report.events_checked} events, "
            f"head {report.head_hash or '(empty)'} (seq {report.head_seq}); "
            f"{rate:,.0f} events/s; {report.anchor}"
        )
        if approvals:
            self._verify_approvals()

    def _compare_witness(self, report, url):
        from dataclasses import replace

        from audit import witness

        try:
            problem = witness.witness_compare(url=url)
        except witness.WitnessError as exc:
            raise CommandError(str(exc)) from None
        if problem:
            return replace(report, ok=False, problem=problem, anchor="witness")
        return replace(report, anchor=f"{report.anchor}; matches the witness")

    def _verify_archive(self, report, url):
        from dataclasses import replace

        from audit import archive

        try:
            problem = archive.archive_verify(url=url)
        except archive.ArchiveError as exc:
            raise CommandError(str(exc)) from None
        if problem:
            return replace(report, ok=False, problem=problem, anchor="archive")
        return replace(report, anchor=f"{report.anchor}; archived segments verified")

    def _verify_approvals(self):
        checked, problems = verifiers.verifier_run("approvals")
        for problem in problems:
            self.stderr.write(f"signed approval does not verify: {problem}")
        if problems:
            raise CommandError(f"{len(problems)} of {checked} signed approvals do not verify")
        self.stdout.write(f"signed approvals verified: {checked}")
