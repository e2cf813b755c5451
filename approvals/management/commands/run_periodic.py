"""Run the periodic jobs (release sweeper, expiry) in this process.

Production runs them from `celery beat`. The embedded default has no broker and
no beat, so `make run` starts this beside the web server.
"""

import time

from django.core.management.base import BaseCommand

from approvals import tasks
from audit.tasks import seal_audit_events


class Command(BaseCommand):
    help = "Run the release sweeper and decision expiry every --interval seconds."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=15.0)
        parser.add_argument("--once", action="store_true", help="run each job once and exit")

    def handle(self, *args, interval: float, once: bool, **options):
        while True:
            expired = tasks.expire_pending_decisions()
            swept = tasks.sweep_releases()
            seal_audit_events()
            if expired or swept:
                self.stdout.write(f"expired {expired}, swept {swept} release(s)")
            if once:
                return
            time.sleep(interval)
