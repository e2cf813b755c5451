"""Run the periodic jobs (release sweeper, expiry) in this process.

Production runs them from `celery beat`. The embedded default has no broker and
no beat, so `make run` starts this beside the web server.
"""

import time

from django.core.management.base import BaseCommand

from approvals import capacity_tasks, tasks
from approvals.notifications import tasks as notification_tasks
from audit.tasks import seal_audit_events


class Command(BaseCommand):
    help = "Run the release sweeper and decision expiry every --interval seconds."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=15.0)
        parser.add_argument("--once", action="store_true", help="run each job once and exit")

    def handle(self, *args, interval: float, once: bool, **options):
        canaries_at = 0.0
        while True:
            expired = tasks.expire_pending_decisions()
            swept = tasks.sweep_releases()
            capacity_tasks.escalate_decisions()
            notification_tasks.notify_new_decisions()
            notification_tasks.send_notification_digests()
            if time.monotonic() >= canaries_at:  # as often as beat runs it
                capacity_tasks.insert_canaries()
                canaries_at = time.monotonic() + 15 * 60
            seal_audit_events()
            if expired or swept:
                self.stdout.write(f"expired {expired}, swept {swept} release(s)")
            if once:
                return
            time.sleep(interval)
