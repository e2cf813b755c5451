from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError

from audit import archive


def _date(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise CommandError(f"--before must be a date like 2026-01-31 (got {text!r})") from None


class Command(BaseCommand):
    help = (
        "Move the chain's oldest events, up to the newest checkpoint before DATE, into a "
        "compressed, verified segment with its manifest; then remove them, leaving an "
        "audit.archived tombstone. DATE must be older than AISPM_AUDIT_RETENTION_DAYS."
    )

    def add_arguments(self, parser):
        parser.add_argument("--before", required=True, help="YYYY-MM-DD (UTC)")
        parser.add_argument("--to", required=True, metavar="URL", help="file:///directory/")

    def handle(self, *args, before, to, **options):
        try:
            done = archive.audit_archive(before=_date(before), url=to)
        except archive.ArchiveError as exc:
            raise CommandError(str(exc)) from None
        if done is None:
            self.stdout.write("nothing to archive: no checkpoint ends before that date")
            return
        self.stdout.write(
            f"archived seq {done.first_seq}..{done.last_seq} ({done.events} events) to "
            f"{done.location}; segment sha256 {done.segment_sha256}"
        )
