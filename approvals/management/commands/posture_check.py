from django.core.management.base import BaseCommand

from approvals.posture import posture_run


class Command(BaseCommand):
    help = "Run every posture check now: open new findings and resolve those that pass again."

    def handle(self, *args, **options):
        result = posture_run()
        self.stdout.write(
            f"posture: {result.opened} opened, {result.resolved} resolved, {result.open} open"
        )
        for check_id in result.failed:
            self.stderr.write(f"check {check_id} failed; its findings are left as they were")
