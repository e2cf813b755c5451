from django.core.management.base import BaseCommand, CommandError

from agents.governance import GovernanceInvalid, apply_governance_file


class Command(BaseCommand):
    help = (
        "Create or update action types, agents, grants and behaviour versions from a "
        "governance YAML file. The whole file is validated first and applied in one "
        "transaction; applying it again changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="path to the governance YAML file")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="validate and show what would change, but write nothing",
        )

    def handle(self, *args, file, dry_run, **options):
        try:
            result = apply_governance_file(file, dry_run=dry_run)
        except GovernanceInvalid as exc:
            raise CommandError("\n".join(exc.errors)) from None
        for line in result.lines:
            self.stdout.write(line)
        if not result.changed:
            self.stdout.write("No changes.")
        if dry_run:
            self.stdout.write("Dry run: nothing was written.")
