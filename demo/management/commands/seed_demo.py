"""Seed a demo: three logins, the demo governance config and ~30 realistic decisions."""

import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from agents.models import ActionType, Agent
from aispm_site import roles
from approvals import services
from approvals.models import Decision
from demo.seed_data import DEMO_DECISIONS

DEMO_CONFIG = Path(settings.BASE_DIR) / "demo" / "governance.yaml"
DEMO_USERS = [
    ("reviewer", roles.REVIEWERS, "Riley Reviewer"),
    ("agentadmin", roles.AGENT_ADMINS, "Ada Admin"),
    ("auditor", roles.AUDITORS, "Audrey Auditor"),
]
# A second reviewer who cannot log in, so two-approver decisions can show "1 of 2".
SECOND_REVIEWER = "ops-lead"


class Command(BaseCommand):
    help = "Create demo users, apply demo/governance.yaml and create ~30 realistic decisions."

    def add_arguments(self, parser):
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Seed only when there are no agents yet; otherwise just print fresh demo logins.",
        )

    def handle(self, *args, if_empty=False, **options):
        if if_empty and Agent.objects.exists():
            self.stdout.write("Demo data already present; issuing fresh demo passwords.")
            self._print_logins(self._demo_users())
            return
        users = self._demo_users()
        call_command("apply_governance", str(DEMO_CONFIG), stdout=self.stdout)
        # The demo's approved decisions stay as they are: they are made with
        # release=False, so nothing is released now.
        created = self._seed_decisions(reviewer=users["reviewer"][0])
        self.stdout.write(self.style.SUCCESS(f"Created {created} demo decisions."))
        # The posture page shows findings at once, not after beat's first run.
        call_command("posture_check", stdout=self.stdout)
        self._print_logins(users)

    def _demo_users(self) -> dict:
        User = get_user_model()
        users = {}
        for username, group_name, full_name in DEMO_USERS:
            first, last = full_name.split(" ", 1)
            user, _ = User.objects.get_or_create(
                username=username,
                defaults={
                    "first_name": first,
                    "last_name": last,
                    "email": f"{username}@aispm.example",
                },
            )
            password = secrets.token_urlsafe(12)
            user.set_password(password)
            user.save()
            user.groups.add(Group.objects.get(name=group_name))
            users[username] = (user, password, group_name)
        second, _ = User.objects.get_or_create(
            username=SECOND_REVIEWER, defaults={"first_name": "Ops", "last_name": "Lead"}
        )
        second.set_unusable_password()
        second.save()
        second.groups.add(Group.objects.get(name=roles.REVIEWERS))
        return users

    def _print_logins(self, users: dict) -> None:
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS("Demo logins (shown once, for this run):"))
        for username, (_user, password, group_name) in users.items():
            self.stdout.write(f"  {group_name:<13} {username:<11} {password}")
        self.stdout.write("")

    @transaction.atomic
    def _seed_decisions(self, *, reviewer) -> int:
        User = get_user_model()
        second = User.objects.get(username=SECOND_REVIEWER)
        agents = {agent.slug: agent for agent in Agent.objects.select_related("active_behaviour")}
        actions = {action.key: action for action in ActionType.objects.all()}
        count = 0
        for slug, action, params, reasoning, evidence, confidence, then in DEMO_DECISIONS:
            decision = services.decision_create(
                agent=agents[slug],
                action_type=actions[action],
                params=params,
                reasoning=reasoning,
                evidence=evidence,
                confidence=confidence,
                release=False,
            )
            count += 1
            self._play(decision, then, reviewer=reviewer, second=second)
        return count

    def _play(self, decision: Decision, then: str, *, reviewer, second) -> None:
        S = Decision.Status
        if then in ("pending", "auto"):
            return
        if then == "one_of_two":
            services.decision_approve(
                decision=decision, reviewer=second, comment="Checked PO.", release=False
            )
            return
        if then == "rejected":
            reasons = {
                "sdr-agent": ("Too pushy: two bumps in a week breaks our cadence.", ["tone"]),
                "support-agent": (
                    "Policy refunds shipping plus 10%, not the full amount.",
                    ["wrong amount"],
                ),
                "finance-agent": (
                    "Duplicate of last month's payment PAY-2026-10-0042.",
                    ["not needed"],
                ),
            }
            reason, tags = reasons[decision.agent.slug]
            services.decision_reject(decision=decision, reviewer=second, reason=reason, tags=tags)
            return
        if then == "expired":
            services.decision_expire(decision=decision)
            return
        if then == "cancelled":
            services.decision_cancel(decision=decision, agent=decision.agent)
            return
        if decision.status == S.PENDING:
            services.decision_approve(
                decision=decision, reviewer=second, comment="Looks right.", release=False
            )
            decision.refresh_from_db()
        if then == "approved":
            return
        if then == "blocked":
            services.decision_block(
                decision=decision, reason="The agent's key was revoked before release."
            )
            return
        services.decision_release_claim(decision=decision)
        if then == "releasing":
            return
        if then == "released":
            services.decision_release_finish(
                decision=decision, succeeded=True, result={"status_code": 200, "body": "ok"}
            )
        elif then == "failed":
            services.decision_release_finish(
                decision=decision,
                succeeded=False,
                result={"error": "connection timed out after 3 attempts"},
            )
