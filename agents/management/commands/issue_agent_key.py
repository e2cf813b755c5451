from django.core.management.base import BaseCommand, CommandError

from agents.models import Agent
from agents.services import agent_key_issue

MAX_DAYS = 3650


class Command(BaseCommand):
    help = (
        "Issue a new key for an agent. The key alone goes to stdout, so it can be piped "
        "into a secret store; it is shown once and only its hash is kept."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug", help="the agent's slug")
        parser.add_argument(
            "--expires-in",
            type=int,
            default=90,
            metavar="DAYS",
            help="days until the key expires; 0 means never (default: 90)",
        )
        parser.add_argument("--label", default="", help="a note to tell keys apart")

    def handle(self, *args, slug, expires_in, label, **options):
        if not 0 <= expires_in <= MAX_DAYS:
            raise CommandError(
                f"--expires-in must be from 0 (never expires) to {MAX_DAYS} days (got {expires_in})"
            )
        if len(label) > 200:
            raise CommandError("--label must be at most 200 characters")
        agent = Agent.objects.filter(slug=slug).first()
        if agent is None:
            raise CommandError(f"unknown agent {slug!r}")
        issued = agent_key_issue(
            agent=agent,
            issued_by="issue_agent_key",
            expires_in_days=expires_in or None,
            label=label,
        )
        self.stdout.write(issued.secret)
        expiry = (
            f"expires {issued.key.expires_at:%Y-%m-%d %H:%M} UTC"
            if issued.key.expires_at
            else "never expires"
        )
        self.stderr.write(
            f"Issued key {issued.key.prefix}… for {agent.slug} ({expiry}). "
            "It is shown once; store it now.",
            style_func=str,  # a note, not an error: no red
        )
