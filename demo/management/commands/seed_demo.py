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

DEMO_CONFIG = Path(settings.BASE_DIR) / "demo" / "governance.yaml"
DEMO_USERS = [
    ("reviewer", roles.REVIEWERS, "Riley Reviewer"),
    ("agentadmin", roles.AGENT_ADMINS, "Ada Admin"),
    ("auditor", roles.AUDITORS, "Audrey Auditor"),
]
# A second reviewer who cannot log in, so two-approver decisions can show "1 of 2".
SECOND_REVIEWER = "ops-lead"

# (agent, action, params, reasoning, evidence, confidence, what happens next)
DEMO_DECISIONS = [
    (
        "sdr-agent",
        "email.send",
        {
            "to": ["maria.keller@northwind.example"],
            "subject": "Pricing for 40 seats",
            "body": "Hi Maria,\n\nThanks for asking about pricing. For 40 seats on the Team "
            "plan we can offer 18 EUR per seat per month, billed annually.\n\nBest,\nSam",
        },
        "Maria replied to the webinar follow-up asking for pricing for 40 seats; the Team "
        "plan fits and the quote follows the public price list.",
        {"signal": "reply", "thread": "webinar-follow-up", "opens": 3, "seats_requested": 40},
        0.86,
        "pending",
    ),
    (
        "sdr-agent",
        "email.send",
        {
            "to": ["j.okafor@brightline.example"],
            "subject": "Demo slots next week",
            "body": "Hi James, three demo slots next week: Tue 10:00, Wed 14:00, Thu 09:30.",
        },
        "James booked no slot after requesting a demo on the website form two days ago.",
        {"signal": "form_submission", "form": "request-demo", "days_since": 2},
        0.78,
        "pending",
    ),
    (
        "sdr-agent",
        "email.send",
        {
            "to": [f"lead{i}@fintech-meetup.example" for i in range(14)],
            "subject": "Slides from the fintech meetup",
            "body": "Thanks for stopping by our booth. Here are the slides we promised.",
        },
        "Fourteen attendees left their cards at the booth and asked for the slides.",
        {"signal": "event_list", "event": "fintech-meetup-berlin", "cards": 14},
        0.72,
        "one_of_two",
    ),
    (
        "sdr-agent",
        "email.send",
        {
            "to": ["sales@competitor.example"],
            "subject": "Partnership?",
            "body": "Would you be open to a co-marketing partnership?",
        },
        "The contact appeared in a partner list, so a partnership email seemed reasonable.",
        {"signal": "partner_list"},
        0.41,
        "auto",
    ),
    (
        "sdr-agent",
        "email.send",
        {
            "to": ["chen.wei@orbitlabs.example"],
            "subject": "Following up",
            "body": "Hi Chen, just bumping this to the top of your inbox!",
        },
        "No reply in 5 days after the first email; a short bump is standard cadence.",
        {"signal": "no_reply", "days_since": 5, "emails_sent": 2},
        0.55,
        "rejected",
    ),
    (
        "sdr-agent",
        "email.send",
        {
            "to": ["p.silva@harbor.example"],
            "subject": "Your trial ends Friday",
            "body": "Hi Paula, your trial ends Friday. Want me to extend it by a week?",
        },
        "Paula's team is active in the trial (12 users) and the trial ends in 3 days.",
        {"signal": "product_usage", "active_users": 12, "trial_days_left": 3},
        0.9,
        "released",
    ),
    (
        "sdr-agent",
        "email.send",
        {
            "to": ["info@quietpines.example"],
            "subject": "Checking in",
            "body": "Hi there, checking in on your evaluation.",
        },
        "The lead went quiet after the pricing call; a check-in keeps the deal warm.",
        {"signal": "no_reply", "days_since": 9},
        0.6,
        "expired",
    ),
    (
        "sdr-agent",
        "email.send",
        {
            "to": ["d.novak@tessellate.example"],
            "subject": "Security questionnaire",
            "body": "Hi Dana, attached is our completed security questionnaire.",
        },
        "Dana asked for the security questionnaire; the agent found the latest version.",
        {"signal": "reply", "asked_for": "security questionnaire"},
        0.83,
        "cancelled",
    ),
    (
        "sdr-agent",
        "crm.update",
        {
            "record": "lead/48213",
            "field": "notes",
            "value": "Asked for 40-seat pricing after webinar.",
        },
        "Logging the pricing request on the lead record.",
        {"signal": "reply"},
        0.95,
        "released",
    ),
    (
        "sdr-agent",
        "crm.update",
        {"record": "opportunity/9921", "field": "stage", "value": "Demo scheduled"},
        "James accepted the Wednesday demo slot.",
        {"calendar_event": "demo-9921"},
        0.92,
        "pending",
    ),
    (
        "sdr-agent",
        "crm.update",
        {"record": "opportunity/9935", "field": "stage", "value": "Qualified"},
        "Budget and timeline confirmed on the discovery call.",
        {"call_notes": "budget approved Q3, 50 seats"},
        0.88,
        "pending",
    ),
    (
        "sdr-agent",
        "crm.update",
        {"record": "lead/50110", "field": "owner", "value": "sam.rivera"},
        "Lead is in Sam's territory (DACH).",
        {"territory": "DACH"},
        0.97,
        "pending",
    ),
    (
        "sdr-agent",
        "crm.update",
        {"record": "contact/30551", "field": "next_step", "value": "Send case study"},
        "The prospect asked for a case study from their industry.",
        {"signal": "reply", "industry": "logistics"},
        0.9,
        "releasing",
    ),
    (
        "support-agent",
        "refund.issue",
        {
            "order_id": "ORD-204518",
            "amount": 249.0,
            "currency": "EUR",
            "reason": "Item arrived damaged (photo attached to ticket)",
        },
        "The customer sent photos of a cracked screen on delivery; policy allows a full "
        "refund for goods damaged in transit.",
        {"ticket": "T-88123", "photos": 2, "carrier_damage_report": True},
        0.91,
        "pending",
    ),
    (
        "support-agent",
        "refund.issue",
        {
            "order_id": "ORD-204777",
            "amount": 39.9,
            "currency": "EUR",
            "reason": "Charged twice for the same order",
        },
        "Two identical card charges within 3 seconds for one order: a double charge.",
        {"ticket": "T-88190", "charges": ["ch_1", "ch_2"], "seconds_apart": 3},
        0.97,
        "released",
    ),
    (
        "support-agent",
        "refund.issue",
        {
            "order_id": "ORD-203001",
            "amount": 89.0,
            "currency": "GBP",
            "reason": "Delivery 9 days late",
        },
        "Tracking shows delivery 9 days after the promised date; policy allows a refund "
        "of shipping plus 10%, but the agent is unsure whether the full amount applies.",
        {"ticket": "T-87002", "promised": "2026-11-10", "delivered": "2026-11-19"},
        0.62,
        "rejected",
    ),
    (
        "support-agent",
        "refund.issue",
        {
            "order_id": "ORD-205100",
            "amount": 480.0,
            "currency": "USD",
            "reason": "Customer unhappy with colour",
        },
        "The customer does not like the colour; offering a refund to keep goodwill.",
        {"ticket": "T-88400", "sentiment": "negative"},
        0.58,
        "pending",
    ),
    (
        "support-agent",
        "refund.issue",
        {
            "order_id": "ORD-205230",
            "amount": 19.0,
            "currency": "EUR",
            "reason": "Missing accessory",
        },
        "The charger was missing from the box; refunding its list price.",
        {"ticket": "T-88452", "missing_item": "charger"},
        0.88,
        "failed",
    ),
    (
        "support-agent",
        "email.send",
        {
            "to": ["tom.h@example.org"],
            "subject": "Re: Order ORD-204518",
            "body": "Hi Tom,\r\nsorry your screen arrived cracked. A full refund is on its way.",
        },
        "Confirming the refund to the customer once it is approved.",
        {"ticket": "T-88123"},
        0.9,
        "pending",
    ),
    (
        "support-agent",
        "email.send",
        {
            "to": ["=cmd|' /C calc'!A0@attacker.example"],
            "subject": "@SUM(1+1)",
            "body": "<script>alert(1)</script><img src=x onerror=alert(2)>",
        },
        "<script>alert('reasoning')</script> Customer asked us to forward the invoice "
        '=HYPERLINK("http://attacker.example") right away.',
        {"note": '<b hx-get="/admin/" hx-trigger="load">click</b>', "injected": "+1-555"},
        0.51,
        "pending",
    ),
    (
        "support-agent",
        "email.send",
        {
            "to": ["l.garcia@example.net"],
            "subject": "Re: Order ORD-199876",
            "body": "Hi Lucia, your replacement ships tomorrow with express delivery.",
        },
        "The replacement was approved yesterday; telling the customer when it ships.",
        {"ticket": "T-87650"},
        0.93,
        "blocked",
    ),
    (
        "support-agent",
        "crm.update",
        {"record": "contact/7781", "field": "notes", "value": "Refund issued for damaged screen."},
        "Keeping the customer record in sync with the ticket.",
        {"ticket": "T-88123"},
        0.99,
        "approved",
    ),
    (
        "finance-agent",
        "payment.transfer",
        {
            "amount": 12500.0,
            "currency": "EUR",
            "beneficiary": "Steelworks GmbH",
            "iban": "DE89370400440532013000",
            "reference": "INV-2026-1183 / PO-5521",
        },
        "Invoice INV-2026-1183 is due today, matches PO-5521 and the goods receipt, and "
        "the supplier's bank details match the vendor master.",
        {
            "invoice": "INV-2026-1183",
            "po": "PO-5521",
            "goods_receipt": "GR-7710",
            "invoice_currency": "EUR",
        },
        0.94,
        "one_of_two",
    ),
    (
        "finance-agent",
        "payment.transfer",
        {
            "amount": 18900.0,
            "currency": "USD",
            "beneficiary": "Cloudhost Inc.",
            "iban": "GB33BUKB20201555555555",
            "reference": "INV-88-2211",
        },
        "Monthly hosting invoice; amount matches the contract.",
        {"invoice": "INV-88-2211", "contract": "C-2024-07", "invoice_currency": "USD"},
        0.9,
        "pending",
    ),
    (
        "finance-agent",
        "payment.transfer",
        {
            "amount": 640.0,
            "currency": "EUR",
            "beneficiary": "Office Supplies Co",
            "iban": "FR1420041010050500013M02606",
            "reference": "INV-3391",
        },
        "Stationery invoice, matches PO-5590, due in 2 days.",
        {"invoice": "INV-3391", "po": "PO-5590", "invoice_currency": "EUR"},
        0.96,
        "released",
    ),
    (
        "finance-agent",
        "payment.transfer",
        {
            "amount": 980.0,
            "currency": "GBP",
            "beneficiary": "Translations Ltd",
            "iban": "GB29NWBK60161331926819",
            "reference": "INV-TR-77",
        },
        "Translation services invoice for the Q4 campaign.",
        {"invoice": "INV-TR-77", "invoice_currency": "EUR"},
        0.8,
        "auto",
    ),
    (
        "finance-agent",
        "payment.transfer",
        {
            "amount": 450.0,
            "currency": "EUR",
            "beneficiary": "Courier Express",
            "iban": "NL91ABNA0417164300",
            "reference": "INV-CE-1021",
        },
        "Courier invoice; the same reference was paid last month, possible duplicate.",
        {
            "invoice": "INV-CE-1021",
            "possible_duplicate_of": "PAY-2026-10-0042",
            "invoice_currency": "EUR",
        },
        0.52,
        "rejected",
    ),
    (
        "finance-agent",
        "payment.transfer",
        {
            "amount": 720.0,
            "currency": "EUR",
            "beneficiary": "Catering Berlin",
            "iban": "DE75512108001245126199",
            "reference": "INV-CB-310",
        },
        "Catering for the customer event on 3 December, matches PO-5602.",
        {"invoice": "INV-CB-310", "po": "PO-5602", "invoice_currency": "EUR"},
        0.91,
        "pending",
    ),
    (
        "finance-agent",
        "email.send",
        {
            "to": ["ar.steelworks@suppliers.example"],
            "subject": "Remittance advice INV-2026-1183",
            "body": "Dear Steelworks team, payment for INV-2026-1183 is scheduled for today.",
        },
        "Suppliers ask for remittance advice on large payments.",
        {"invoice": "INV-2026-1183"},
        0.89,
        "pending",
    ),
    (
        "finance-agent",
        "email.send",
        {
            "to": ["billing.cloudhost@suppliers.example"],
            "subject": "Invoice query INV-88-2211",
            "body": "Hello, could you confirm the VAT number on INV-88-2211?",
        },
        "The VAT number on the invoice differs from the vendor master.",
        {"invoice": "INV-88-2211", "vat_on_invoice": "GB123", "vat_in_master": "GB124"},
        0.84,
        "released",
    ),
    (
        "finance-agent",
        "payment.transfer",
        {
            "amount": 300.0,
            "currency": "EUR",
            "beneficiary": "Parking Services",
            "iban": "DE02120300000000202051",
            "reference": "INV-PK-11",
        },
        "Monthly parking invoice.",
        {"invoice": "INV-PK-11", "invoice_currency": "EUR"},
        0.87,
        "expired",
    ),
    (
        "finance-agent",
        "ledger.export",
        {"invoice": "INV-2026-1183"},
        "Demo only: approve this to see a failed release. The legacy ledger's connector "
        "points at a closed local port on purpose.",
        {"invoice": "INV-2026-1183"},
        0.95,
        "pending",
    ),
]


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
