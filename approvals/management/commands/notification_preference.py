"""Set a group's notification preference for one channel (users use /inbox/profile/)."""

from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from agents.models import Risk
from approvals.models import NotificationPreference
from approvals.notifications import PreferenceRefused, preference_save


class Command(BaseCommand):
    help = "Set how a group hears about decisions waiting for review, per channel."

    def add_arguments(self, parser):
        parser.add_argument("group")
        parser.add_argument("channel", choices=NotificationPreference.Channel.values)
        parser.add_argument(
            "--mode", choices=NotificationPreference.Mode.values, default="immediate"
        )
        parser.add_argument("--min-risk", choices=Risk.values, default="high")
        parser.add_argument("--digest-minutes", type=int, default=60)
        parser.add_argument(
            "--webhook-url-env",
            default="",
            help="the variable holding the chat webhook URL (never on the command line)",
        )

    def handle(self, *args, **options):
        import os

        group = Group.objects.filter(name=options["group"]).first()
        if group is None:
            raise CommandError(f"No group named {options['group']!r}.")
        url = None
        if options["webhook_url_env"]:
            url = os.environ.get(options["webhook_url_env"], "").strip()
            if not url:
                raise CommandError(f"{options['webhook_url_env']} is unset.")
        if not 5 <= options["digest_minutes"] <= 1440:
            raise CommandError("--digest-minutes must be from 5 to 1440.")
        try:
            preference = preference_save(
                actor="system:cli",
                group=group,
                channel=options["channel"],
                mode=options["mode"],
                min_risk=options["min_risk"],
                digest_minutes=options["digest_minutes"],
                webhook_url=url,
            )
        except PreferenceRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{group.name}: {preference.channel} {preference.mode}")
