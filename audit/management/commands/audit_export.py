from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit import segments, services
from audit.models import AuditCheckpoint, AuditEvent


class Command(BaseCommand):
    help = (
        "Write a contiguous run of the audit chain as JSON Lines with a manifest naming the "
        "checkpoint that signs it, for `python -m audit.offline_verify`. By default: seq 1 "
        "to the newest checkpoint."
    )

    def add_arguments(self, parser):
        parser.add_argument("out", type=Path, help="file to create (never overwritten)")
        parser.add_argument("--from-seq", type=int, default=None)
        parser.add_argument("--to-seq", type=int, default=None)
        parser.add_argument("--gzip", action="store_true", help="compress the events")

    def handle(self, *args, out, from_seq=None, to_seq=None, gzip=False, **options):
        services.audit_seal_all()
        if to_seq is None:
            newest = AuditCheckpoint.objects.order_by("-last_seq").first()
            if newest is None:
                raise CommandError("no checkpoint yet: run audit_checkpoint, or pass --to-seq")
            to_seq = newest.last_seq
        if from_seq is None:
            from_seq = (
                AuditEvent.objects.filter(seq__isnull=False)
                .order_by("seq")
                .values_list("seq", flat=True)
                .first()
                or 1
            )
        try:
            manifest = segments.segment_write(
                path=out, first_seq=from_seq, last_seq=to_seq, compress=gzip
            )
        except (segments.SegmentError, FileExistsError) as exc:
            raise CommandError(str(exc)) from None
        checkpoint = manifest["checkpoint"]
        self.stdout.write(
            f"wrote seq {from_seq}..{to_seq} ({manifest['events']} events) to {out}; "
            + (
                f"signed by the checkpoint over seq {checkpoint['first_seq']}.."
                f"{checkpoint['last_seq']}"
                if checkpoint
                else "no checkpoint covers it yet"
            )
        )
