"""Simulated traffic for the demo agents in demo/governance.yaml.

The simulator deals requests from a shuffled deck rather than drawing each one
independently, so every window of one deck (40 requests when all three agents
run) holds the intended mix: mostly reviewable work, some auto-allowed CRM
hygiene, a few policy denials and about 5% out-of-scope attempts. The contents
(people, companies, amounts, wording) are drawn from pools with the caller's
``random.Random``, so a seed reproduces the run.

`expect` on each request is what the demo policy should do with it; the
simulator reports any response that disagrees, which catches drift between
these generators and the demo config.
"""

import json
import math
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

PENDING, APPROVED, DENIED, OUT_OF_SCOPE = "pending", "approved", "denied", "out_of_scope"
DEMO_AGENTS = ("sdr-agent", "support-agent", "finance-agent")
RELEASE_STATUSES = {"releasing", "released", "failed", "blocked"}
NO_RESPONSE = "none"  # the HTTP status of a request that got no answer


@dataclass
class SimRequest:
    agent: str
    kind: str
    expect: str
    action: str
    params: dict
    reasoning: str
    evidence: dict
    confidence: float
    external_ref: str = ""
    idempotency_key: str = ""

    def body(self) -> dict:
        return {
            "action": self.action,
            "params": self.params,
            "reasoning": self.reasoning,
            "evidence": self.evidence,
            "confidence": self.confidence,
            "idempotency_key": self.idempotency_key,
            "external_ref": self.external_ref,
        }


# Pools. Every domain is under .example so nothing here can reach a real mailbox.

FIRST_NAMES = [
    "Maria", "James", "Chen", "Paula", "Dana", "Tom", "Lucia", "Amir", "Sofia", "Lars",
    "Priya", "Kenji", "Fatima", "Oliver", "Ines", "Mateo", "Hannah", "Youssef", "Elena",
    "Noah", "Aisha", "Jonas", "Marta", "Ravi", "Chloe", "Tariq", "Freya", "Diego",
]  # fmt: skip
LAST_NAMES = [
    "Keller", "Okafor", "Wei", "Silva", "Novak", "Hughes", "Garcia", "Haddad", "Rossi",
    "Lindqvist", "Patel", "Tanaka", "Benali", "Brennan", "Moreau", "Fernandez", "Schmidt",
    "Mansour", "Popescu", "Jensen", "Khan", "Weber", "Kowalska", "Iyer", "Dubois", "Nakamura",
]  # fmt: skip
COMPANIES = [
    ("Northwind", "northwind.example"),
    ("Brightline", "brightline.example"),
    ("Orbit Labs", "orbitlabs.example"),
    ("Harbor Freight Co", "harbor.example"),
    ("Tessellate", "tessellate.example"),
    ("Quiet Pines", "quietpines.example"),
    ("Bluefin Analytics", "bluefin.example"),
    ("Kestrel Health", "kestrelhealth.example"),
    ("Lumen Retail", "lumenretail.example"),
    ("Granite Insurance", "graniteins.example"),
    ("Fieldstone Energy", "fieldstone.example"),
    ("Pinecrest Schools", "pinecrest.example"),
]
CUSTOMER_DOMAINS = ["example.com", "example.org", "example.net", "mail.example"]
REPS = ["sam.rivera", "alex.chen", "jordan.blake", "mira.holt"]
STAGES = ["Qualified", "Demo scheduled", "Proposal sent", "Negotiation", "Closed won"]
EVENTS = [
    ("fintech-meetup-berlin", "the fintech meetup in Berlin"),
    ("saas-summit-lisbon", "SaaS Summit Lisbon"),
    ("devops-days-amsterdam", "DevOps Days Amsterdam"),
    ("webinar-q4-roadmap", "the Q4 roadmap webinar"),
]
PRODUCTS = ["wireless headphones", "standing desk", "espresso machine", "laptop stand",
            "smart thermostat", "4K monitor", "office chair", "air purifier"]  # fmt: skip
# (name, IBAN, invoice currency, mailbox local part). IBANs are published test numbers.
SUPPLIERS = [
    ("Steelworks GmbH", "DE89370400440532013000", "EUR", "ar.steelworks"),
    ("Translations Ltd", "GB29NWBK60161331926819", "GBP", "billing.translations"),
    ("Courier Express", "NL91ABNA0417164300", "EUR", "invoices.courierexpress"),
    ("Catering Berlin", "DE75512108001245126199", "EUR", "buchhaltung.cateringberlin"),
    ("Parking Services", "DE02120300000000202051", "EUR", "accounts.parking"),
    ("CloudHost Ltd", "GB82WEST12345698765432", "USD", "billing.cloudhost"),
    ("Nordic Print AB", "SE4550000000058398257466", "EUR", "faktura.nordicprint"),
    ("Atelier Mobilier SARL", "FR1420041010050500013M02606", "EUR", "compta.ateliermobilier"),
    ("Oficina Verde SL", "ES9121000418450200051332", "EUR", "facturas.oficinaverde"),
]
CURRENCIES = ["EUR", "USD", "GBP"]


def _person(rng: random.Random, domain: str | None = None) -> tuple[str, str]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    if domain is None:
        domain = rng.choice(CUSTOMER_DOMAINS)
    return first, f"{first.lower()}.{last.lower()}@{domain}"


def _confidence(rng: random.Random, low: float, high: float) -> float:
    return round(rng.uniform(low, high), 2)


def _amount(rng: random.Random, low: float, high: float) -> float:
    return round(rng.uniform(low, high), 2)


def _order(rng: random.Random) -> str:
    return f"ORD-{rng.randint(200000, 209999)}"


def _ticket(rng: random.Random) -> str:
    return f"T-{rng.randint(87000, 89999)}"


def _invoice(rng: random.Random, supplier: tuple) -> str:
    code = "".join(word[0] for word in supplier[0].split()).upper()
    return f"INV-{code}-{rng.randint(100, 9999)}"


def _email(to: list[str], subject: str, body: str) -> dict:
    return {"to": to, "subject": subject, "body": body}


# sdr-agent


def sdr_follow_up(rng: random.Random) -> SimRequest:
    company, domain = rng.choice(COMPANIES)
    first, address = _person(rng, domain)
    seats = rng.choice([10, 15, 25, 40, 60, 120])
    days = rng.randint(2, 9)
    variants = [
        (
            f"Pricing for {seats} seats",
            f"Hi {first},\n\nThanks for asking about pricing. For {seats} seats on the Team "
            f"plan we can offer {rng.choice([16, 18, 22])} EUR per seat per month, billed "
            "annually.\n\nBest,\nSam",
            f"{first} from {company} replied to the webinar follow-up asking for pricing for "
            f"{seats} seats; the Team plan fits and the quote follows the public price list.",
            {
                "signal": "reply",
                "thread": "webinar-follow-up",
                "opens": rng.randint(1, 6),
                "seats_requested": seats,
            },
            (0.75, 0.95),
        ),
        (
            "Demo slots next week",
            f"Hi {first}, here are three demo slots next week: Tue 10:00, Wed 14:00, "
            "Thu 09:30. Reply with the one that suits you.",
            f"{first} requested a demo on the website form {days} days ago and has not "
            "booked a slot yet.",
            {"signal": "form_submission", "form": "request-demo", "days_since": days},
            (0.7, 0.9),
        ),
        (
            f"Your trial ends in {rng.randint(2, 5)} days",
            f"Hi {first}, your {company} trial ends soon. Want me to extend it by a week "
            "so your team can finish the evaluation?",
            f"{company} is active in the trial ({rng.randint(4, 30)} users this week) and "
            "the trial ends soon; an extension offer is standard.",
            {
                "signal": "product_usage",
                "active_users": rng.randint(4, 30),
                "trial_days_left": rng.randint(2, 5),
            },
            (0.8, 0.97),
        ),
        (
            "Following up",
            f"Hi {first}, following up on my note from last week. Is pricing still on "
            "your list for this quarter?",
            f"No reply in {days} days after the first email; a short bump is standard cadence.",
            {"signal": "no_reply", "days_since": days, "emails_sent": rng.randint(1, 2)},
            (0.5, 0.75),
        ),
        (
            "Security questionnaire",
            f"Hi {first}, attached is our completed security questionnaire and the latest "
            "SOC 2 report summary.",
            f"{first} asked for the security questionnaire; the agent found the latest version.",
            {"signal": "reply", "asked_for": "security questionnaire"},
            (0.8, 0.95),
        ),
    ]
    subject, body, reasoning, evidence, (low, high) = rng.choice(variants)
    params = _email([address], subject, body)
    if rng.random() < 0.2:
        params["cc"] = [f"{rng.choice(REPS)}@acme.example"]
    return SimRequest(
        agent="sdr-agent",
        kind="follow-up email",
        expect=PENDING,
        action="email.send",
        params=params,
        reasoning=reasoning,
        evidence=evidence,
        confidence=_confidence(rng, low, high),
        external_ref=f"lead/{rng.randint(40000, 59999)}",
    )


def sdr_crm_note(rng: random.Random) -> SimRequest:
    first, _ = _person(rng)
    company, _ = rng.choice(COMPANIES)
    record = f"lead/{rng.randint(40000, 59999)}"
    field_name, value, reasoning = rng.choice(
        [
            ("notes", f"{first} ({company}) asked for pricing after the webinar.",
             "Logging the pricing request on the lead record."),
            ("notes", f"{first} opened the trial-ending email three times; no reply yet.",
             "Recording engagement so the account executive sees it."),
            ("next_step", "Send case study and propose a demo slot",
             f"{first} asked how similar companies use the product."),
            ("next_step", "Follow up after their budget meeting on Thursday",
             f"{first} said budget is decided this week."),
        ]
    )  # fmt: skip
    return SimRequest(
        agent="sdr-agent",
        kind="crm note",
        expect=APPROVED,
        action="crm.update",
        params={"record": record, "field": field_name, "value": value},
        reasoning=reasoning,
        evidence={"signal": rng.choice(["reply", "email_open", "call"])},
        confidence=_confidence(rng, 0.9, 0.99),
        external_ref=record,
    )


def sdr_crm_change(rng: random.Random) -> SimRequest:
    record = f"opportunity/{rng.randint(9000, 9999)}"
    choice = rng.randrange(3)
    if choice == 0:
        stage = rng.choice(STAGES)
        params = {"record": record, "field": "stage", "value": stage}
        reasoning = f"The prospect confirmed the next step on the call; moving to {stage}."
        evidence = {"call_notes": f"{rng.choice(['budget approved', 'timeline Q3'])}"}
    elif choice == 1:
        rep = rng.choice(REPS)
        params = {"record": f"lead/{rng.randint(40000, 59999)}", "field": "owner", "value": rep}
        reasoning = f"The lead is in {rep}'s territory."
        evidence = {"territory": rng.choice(["DACH", "Nordics", "UK&I", "Benelux", "Iberia"])}
    else:
        close = date.today() + timedelta(days=rng.randint(14, 120))
        params = {"record": record, "field": "close_date", "value": close.isoformat()}
        reasoning = "The champion shared their procurement timeline."
        evidence = {"signal": "reply", "procurement_weeks": rng.randint(2, 12)}
    return SimRequest(
        agent="sdr-agent",
        kind="crm change",
        expect=PENDING,
        action="crm.update",
        params=params,
        reasoning=reasoning,
        evidence=evidence,
        confidence=_confidence(rng, 0.8, 0.97),
        external_ref=params["record"],
    )


def _attendees(rng: random.Random, count: int) -> list[str]:
    addresses: list[str] = []
    while len(addresses) < count:
        _, domain = rng.choice(COMPANIES)
        _, address = _person(rng, domain)
        if address not in addresses:
            addresses.append(address)
    return addresses


def sdr_bulk_email(rng: random.Random) -> SimRequest:
    slug, event = rng.choice(EVENTS)
    count = rng.randint(11, 40)
    return SimRequest(
        agent="sdr-agent",
        kind="bulk email",
        expect=PENDING,
        action="email.send",
        params=_email(
            _attendees(rng, count),
            f"Slides from {event}",
            f"Thanks for stopping by our booth at {event}. Here are the slides we promised.",
        ),
        reasoning=f"{count} attendees left their cards at the booth and asked for the slides.",
        evidence={"signal": "event_list", "event": slug, "cards": count},
        confidence=_confidence(rng, 0.65, 0.85),
    )


def sdr_competitor_email(rng: random.Random) -> SimRequest:
    first, _ = _person(rng)
    local = rng.choice(["sales", "partners", f"{first.lower()}"])
    return SimRequest(
        agent="sdr-agent",
        kind="competitor email",
        expect=DENIED,
        action="email.send",
        params=_email(
            [f"{local}@competitor.example"],
            rng.choice(["Partnership?", "Comparing notes", "Quick question about your pricing"]),
            "Would you be open to a short call about a co-marketing partnership?",
        ),
        reasoning="The contact appeared in a partner list, so an introduction seemed reasonable.",
        evidence={"signal": "partner_list", "source": "conference attendee export"},
        confidence=_confidence(rng, 0.35, 0.6),
    )


def sdr_out_of_scope(rng: random.Random) -> SimRequest:
    if rng.random() < 0.5:
        supplier = rng.choice(SUPPLIERS)
        return SimRequest(
            agent="sdr-agent",
            kind="out of scope: payment",
            expect=OUT_OF_SCOPE,
            action="payment.transfer",
            params={
                "amount": _amount(rng, 200, 2500),
                "currency": supplier[2],
                "beneficiary": supplier[0],
                "iban": supplier[1],
                "reference": "Booth deposit",
            },
            reasoning="The event organiser asked for the booth deposit before Friday.",
            evidence={"signal": "email", "deadline": "Friday"},
            confidence=_confidence(rng, 0.5, 0.8),
        )
    _, event = rng.choice(EVENTS)
    return SimRequest(
        agent="sdr-agent",
        kind="out of scope: 60 recipients",
        expect=OUT_OF_SCOPE,
        action="email.send",
        params=_email(
            _attendees(rng, 60),
            f"Recap of {event}",
            "Thanks for joining us. Here is a recap and a link to book a demo.",
        ),
        reasoning="Sending the recap to everyone on the attendee list in one go saves time.",
        evidence={"signal": "event_list", "rows": 60},
        confidence=_confidence(rng, 0.6, 0.8),
    )


# support-agent

REFUND_REASONS = [
    ("Charged twice for the same order",
     "Two identical card charges seconds apart for one order: a double charge.",
     lambda rng: {"charges": 2, "seconds_apart": rng.randint(1, 9)}),
    ("Item arrived damaged",
     "The customer sent photos of the damage on delivery; policy allows a full refund for "
     "goods damaged in transit.",
     lambda rng: {"photos": rng.randint(1, 4), "carrier_damage_report": rng.random() < 0.6}),
    ("Delivery more than 7 days late",
     "Tracking shows delivery well after the promised date; policy allows a refund.",
     lambda rng: {"days_late": rng.randint(8, 20)}),
    ("Missing accessory",
     "An accessory was missing from the box; refunding its list price.",
     lambda rng: {"missing_item": rng.choice(["charger", "cable", "remote", "manual"])}),
]  # fmt: skip


def _refund(
    rng: random.Random, *, kind: str, low: float, high: float, confidence: tuple, expect: str
) -> SimRequest:
    order, ticket = _order(rng), _ticket(rng)
    product = rng.choice(PRODUCTS)
    reason, reasoning, extra = rng.choice(REFUND_REASONS)
    return SimRequest(
        agent="support-agent",
        kind=kind,
        expect=expect,
        action="refund.issue",
        params={
            "order_id": order,
            "amount": _amount(rng, low, high),
            "currency": rng.choice(CURRENCIES),
            "reason": f"{reason} ({product})",
        },
        reasoning=reasoning,
        evidence={"ticket": ticket, "order": order, "product": product, **extra(rng)},
        confidence=_confidence(rng, *confidence),
        external_ref=ticket,
    )


def support_small_refund(rng: random.Random) -> SimRequest:
    return _refund(
        rng, kind="small refund", low=9, high=100, confidence=(0.75, 0.99), expect=PENDING
    )


def support_large_refund(rng: random.Random) -> SimRequest:
    return _refund(
        rng, kind="large refund", low=100.01, high=500, confidence=(0.75, 0.97), expect=PENDING
    )


def support_unsure_refund(rng: random.Random) -> SimRequest:
    order, ticket = _order(rng), _ticket(rng)
    product = rng.choice(PRODUCTS)
    return SimRequest(
        agent="support-agent",
        kind="low-confidence refund",
        expect=PENDING,
        action="refund.issue",
        params={
            "order_id": order,
            "amount": _amount(rng, 15, 480),
            "currency": rng.choice(CURRENCIES),
            "reason": rng.choice(
                [f"Customer unhappy with the {product}", f"{product} stopped working after 40 days"]
            ),
        },
        reasoning="The case is outside the usual refund reasons; offering a refund to keep "
        "goodwill, but the agent is not sure the policy covers it.",
        evidence={"ticket": ticket, "order": order, "sentiment": "negative"},
        confidence=_confidence(rng, 0.4, 0.69),
        external_ref=ticket,
    )


def support_reply(rng: random.Random) -> SimRequest:
    first, address = _person(rng)
    order, ticket = _order(rng), _ticket(rng)
    product = rng.choice(PRODUCTS)
    body, reasoning = rng.choice(
        [
            (f"Hi {first},\n\nsorry your {product} arrived damaged. A full refund for order "
             f"{order} is on its way and should reach you in 3-5 working days.",
             "Confirming the refund to the customer once it is approved."),
            (f"Hi {first},\n\nyour replacement {product} for order {order} ships tomorrow "
             "with express delivery.",
             "The replacement was approved yesterday; telling the customer when it ships."),
            (f"Hi {first},\n\nthanks for your patience. Could you send a photo of the "
             f"{product} so we can process order {order} quickly?",
             "The ticket lacks the photo the refund policy requires."),
            (f"Hi {first},\n\nthe courier confirmed order {order} is out for delivery today.",
             "The customer asked where the order is; tracking shows it out for delivery."),
        ]
    )  # fmt: skip
    return SimRequest(
        agent="support-agent",
        kind="customer reply",
        expect=PENDING,
        action="email.send",
        params=_email([address], f"Re: Order {order}", body),
        reasoning=reasoning,
        evidence={"ticket": ticket, "order": order},
        confidence=_confidence(rng, 0.8, 0.98),
        external_ref=ticket,
    )


def support_crm_note(rng: random.Random) -> SimRequest:
    order, ticket = _order(rng), _ticket(rng)
    record = f"contact/{rng.randint(7000, 7999)}"
    field_name, value = rng.choice(
        [
            ("notes", f"Refund requested for {order}; ticket {ticket}."),
            ("notes", f"Replacement shipped for {order}."),
            ("next_step", f"Check delivery of {order} on Monday"),
        ]
    )
    return SimRequest(
        agent="support-agent",
        kind="crm note",
        expect=APPROVED,
        action="crm.update",
        params={"record": record, "field": field_name, "value": value},
        reasoning="Keeping the customer record in sync with the ticket.",
        evidence={"ticket": ticket},
        confidence=_confidence(rng, 0.92, 0.99),
        external_ref=ticket,
    )


def support_out_of_scope(rng: random.Random) -> SimRequest:
    choice = rng.randrange(3)
    if choice == 0:
        request = _refund(
            rng,
            kind="out of scope: refund over 500",
            low=650,
            high=3000,
            confidence=(0.7, 0.9),
            expect=OUT_OF_SCOPE,
        )
        request.reasoning = "The customer is a key account; refunding the whole order."
        return request
    if choice == 1:
        first, address = _person(rng)
        _, other = _person(rng)
        order = _order(rng)
        return SimRequest(
            agent="support-agent",
            kind="out of scope: two recipients",
            expect=OUT_OF_SCOPE,
            action="email.send",
            params=_email(
                [address, other],
                f"Re: Order {order}",
                f"Hi {first}, looping in your colleague on the status of order {order}.",
            ),
            reasoning="The customer asked to keep a colleague informed.",
            evidence={"ticket": _ticket(rng), "order": order},
            confidence=_confidence(rng, 0.6, 0.85),
        )
    supplier = rng.choice(SUPPLIERS)
    return SimRequest(
        agent="support-agent",
        kind="out of scope: payment",
        expect=OUT_OF_SCOPE,
        action="payment.transfer",
        params={
            "amount": _amount(rng, 20, 300),
            "currency": supplier[2],
            "beneficiary": supplier[0],
            "iban": supplier[1],
            "reference": f"Return shipping {_order(rng)}",
        },
        reasoning="The courier needs paying for the return pick-up.",
        evidence={"ticket": _ticket(rng)},
        confidence=_confidence(rng, 0.5, 0.8),
    )


# finance-agent


def _payment(
    rng: random.Random, *, kind: str, low: float, high: float, expect: str, mismatch: bool = False
) -> SimRequest:
    supplier = rng.choice(SUPPLIERS)
    name, iban, currency, _ = supplier
    invoice = _invoice(rng, supplier)
    po = f"PO-{rng.randint(5000, 5999)}"
    invoice_currency = currency
    paid_currency = currency
    reasoning = f"Invoice {invoice} from {name} matches {po} and is due in {{days}} days."
    if mismatch:
        paid_currency = rng.choice([c for c in CURRENCIES if c != currency])
        reasoning = (
            f"Invoice {invoice} from {name} is due in {{days}} days; paying from the "
            f"{paid_currency} account, which has the balance."
        )
    days = rng.randint(0, 14)
    return SimRequest(
        agent="finance-agent",
        kind=kind,
        expect=expect,
        action="payment.transfer",
        params={
            "amount": _amount(rng, low, high),
            "currency": paid_currency,
            "beneficiary": name,
            "iban": iban,
            "reference": f"{invoice} / {po}",
        },
        reasoning=reasoning.format(days=days),
        evidence={
            "invoice": invoice,
            "po": po,
            "invoice_currency": invoice_currency,
            "due_in_days": days,
            "three_way_match": rng.random() < 0.9,
        },
        confidence=_confidence(rng, 0.75, 0.98),
        external_ref=invoice,
    )


def finance_small_payment(rng: random.Random) -> SimRequest:
    return _payment(rng, kind="small payment", low=40, high=1000, expect=PENDING)


def finance_large_payment(rng: random.Random) -> SimRequest:
    return _payment(rng, kind="large payment", low=1000.01, high=48000, expect=PENDING)


def finance_currency_mismatch(rng: random.Random) -> SimRequest:
    return _payment(rng, kind="currency mismatch", low=100, high=5000, expect=DENIED, mismatch=True)


def finance_supplier_email(rng: random.Random) -> SimRequest:
    supplier = rng.choice(SUPPLIERS)
    name, _, _, mailbox = supplier
    invoice = _invoice(rng, supplier)
    subject, body, reasoning = rng.choice(
        [
            (f"Remittance advice {invoice}",
             f"Dear {name} team, payment for {invoice} is scheduled for today.",
             "Suppliers ask for remittance advice on scheduled payments."),
            (f"Invoice query {invoice}",
             f"Hello, could you confirm the VAT number on {invoice}? It differs from our "
             "vendor master.",
             "The VAT number on the invoice differs from the vendor master."),
            (f"Missing PO on {invoice}",
             f"Hello, {invoice} has no purchase order number. Could you reissue it with one?",
             "Invoices without a PO cannot be matched and paid."),
        ]
    )  # fmt: skip
    return SimRequest(
        agent="finance-agent",
        kind="supplier email",
        expect=PENDING,
        action="email.send",
        params=_email([f"{mailbox}@suppliers.example"], subject, body),
        reasoning=reasoning,
        evidence={"invoice": invoice, "supplier": name},
        confidence=_confidence(rng, 0.8, 0.97),
        external_ref=invoice,
    )


def finance_out_of_scope(rng: random.Random) -> SimRequest:
    choice = rng.randrange(3)
    if choice == 0:
        request = _payment(
            rng,
            kind="out of scope: payment over 50000",
            low=52000,
            high=180000,
            expect=OUT_OF_SCOPE,
        )
        request.reasoning = "Annual prepayment for the supplier contract, due this week."
        return request
    if choice == 1:
        first, address = _person(rng)
        return SimRequest(
            agent="finance-agent",
            kind="out of scope: email outside suppliers",
            expect=OUT_OF_SCOPE,
            action="email.send",
            params=_email(
                [address],
                "Your refund",
                f"Hi {first}, your refund has been paid to the card on file.",
            ),
            reasoning="The customer asked finance directly whether the refund was paid.",
            evidence={"signal": "inbound_email"},
            confidence=_confidence(rng, 0.6, 0.85),
        )
    return SimRequest(
        agent="finance-agent",
        kind="out of scope: crm",
        expect=OUT_OF_SCOPE,
        action="crm.update",
        params={
            "record": f"account/{rng.randint(1000, 1999)}",
            "field": "notes",
            "value": "Payment terms changed to net 60.",
        },
        reasoning="Recording the new payment terms on the account.",
        evidence={"contract": f"C-{rng.randint(100, 999)}"},
        confidence=_confidence(rng, 0.7, 0.9),
    )


Generator = Callable[[random.Random], SimRequest]

# Cards per agent in one deck: (generator, how many). With all three agents the
# deck is 38 in-scope cards plus 2 out-of-scope ones, so 5% of the traffic.
MIX: dict[str, list[tuple[Generator, int]]] = {
    "sdr-agent": [
        (sdr_follow_up, 8),
        (sdr_crm_note, 3),
        (sdr_crm_change, 2),
        (sdr_bulk_email, 1),
        (sdr_competitor_email, 1),
    ],
    "support-agent": [
        (support_small_refund, 3),
        (support_large_refund, 2),
        (support_unsure_refund, 1),
        (support_reply, 4),
        (support_crm_note, 2),
    ],
    "finance-agent": [
        (finance_small_payment, 4),
        (finance_large_payment, 2),
        (finance_currency_mismatch, 1),
        (finance_supplier_email, 4),
    ],
}
OUT_OF_SCOPE_GENERATORS: dict[str, Generator] = {
    "sdr-agent": sdr_out_of_scope,
    "support-agent": support_out_of_scope,
    "finance-agent": finance_out_of_scope,
}
OUT_OF_SCOPE_SHARE = 0.05


class Deck:
    """Deals requests in shuffled rounds that keep the intended mix.

    A card for an agent that is paused (rate-limited) is discarded, so the mix of
    the agents still sending stays the same.
    """

    def __init__(self, agents: list[str], rng: random.Random):
        self.rng = rng
        self.agents = list(agents)
        self.in_scope = [
            (agent, generator)
            for agent in self.agents
            for generator, count in MIX[agent]
            for _ in range(count)
        ]
        share = OUT_OF_SCOPE_SHARE / (1 - OUT_OF_SCOPE_SHARE)
        self.misfires = max(1, round(len(self.in_scope) * share))
        self.round: list[tuple[str, Generator]] = []

    def _new_round(self) -> list[tuple[str, Generator]]:
        cards = self.in_scope[:]
        for _ in range(self.misfires):
            agent = self.rng.choice(self.agents)
            cards.append((agent, OUT_OF_SCOPE_GENERATORS[agent]))
        self.rng.shuffle(cards)
        return cards

    def deal(self, available: set[str]) -> SimRequest | None:
        """The next request for one of the available agents, or None if none is available."""
        if not available & set(self.agents):
            return None
        while True:
            if not self.round:
                self.round = self._new_round()
            agent, generator = self.round.pop()
            if agent in available:
                return generator(self.rng)


# HTTP


@dataclass
class Outcome:
    request: SimRequest
    http_status: int | None = None  # None: the request never got an answer
    error_code: str = ""
    decision_status: str = ""
    retry_after: float = 0.0
    latency: float = 0.0
    detail: str = ""

    @property
    def result(self) -> str:
        """What the request turned into, in the terms of SimRequest.expect."""
        if self.http_status in (200, 201):
            return self.decision_status
        if self.http_status == 403 and self.error_code == "out_of_scope":
            return OUT_OF_SCOPE
        return self.error_code or (f"http {self.http_status}" if self.http_status else "error")

    @property
    def as_expected(self) -> bool:
        result, expect = self.result, self.request.expect
        # An auto-approved decision may already be on its way out when the answer is built.
        return result == expect or (expect == APPROVED and result in RELEASE_STATUSES)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # a redirected POST would lose its body; report the 3xx instead


# Agents talk to aispm directly, never through an HTTP proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


def http_call(
    method: str, url: str, *, key: str | None = None, body: dict | None = None, timeout=10.0
) -> tuple[int, dict, dict]:
    """(status, JSON body or {}, headers). Raises OSError for network failures."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Accept": "application/json", "User-Agent": "aispm-simulator/1"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with OPENER.open(req, timeout=timeout) as response:
            status, raw, response_headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        status, raw, response_headers = exc.code, exc.read(), exc.headers
    try:
        payload = json.loads(raw) if raw else {}
    except ValueError:
        payload = {}
    return status, payload if isinstance(payload, dict) else {}, dict(response_headers or {})


def submit(base_url: str, key: str, request: SimRequest, timeout: float = 10.0) -> Outcome:
    """POST one request to the agent API; never raises."""
    outcome = Outcome(request=request)
    started = time.monotonic()
    try:
        status, payload, headers = http_call(
            "POST", f"{base_url}/api/v1/decisions/", key=key, body=request.body(), timeout=timeout
        )
    except (OSError, ValueError) as exc:  # URLError, timeouts, resets, bad status lines
        outcome.latency = time.monotonic() - started
        outcome.detail = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        return outcome
    outcome.latency = time.monotonic() - started
    outcome.http_status = status
    if status in (200, 201):
        outcome.decision_status = str(payload.get("status", ""))
    else:
        error = payload.get("error") if isinstance(payload.get("error"), dict) else {}
        outcome.error_code = str(error.get("code", ""))
        outcome.detail = json.dumps(error.get("details") or error.get("message") or "")[:500]
    if status == 429:
        retry_after = {k.lower(): v for k, v in headers.items()}.get("retry-after", "")
        try:
            outcome.retry_after = max(float(retry_after), 1.0)
        except ValueError:
            outcome.retry_after = 60.0
    return outcome


@dataclass
class Stats:
    """Counts for the progress lines and the summary, kept per agent."""

    agents: list[str]
    sent: dict[str, int] = field(default_factory=dict)
    by_http: dict[str, dict[str, int]] = field(default_factory=dict)
    by_decision: dict[str, dict[str, int]] = field(default_factory=dict)
    out_of_scope: dict[str, int] = field(default_factory=dict)
    rate_limited: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    unexpected: list[Outcome] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    @staticmethod
    def _bump(counter: dict, key: str, by: int = 1) -> None:
        counter[key] = counter.get(key, 0) + by

    def record_sent(self, agent: str) -> None:
        self._bump(self.sent, agent)

    def record(self, outcome: Outcome) -> None:
        agent = outcome.request.agent
        if outcome.http_status is None:
            self._bump(self.errors, agent)
            self._bump(self.by_http.setdefault(NO_RESPONSE, {}), agent)
            return
        self.latencies.append(outcome.latency)
        self._bump(self.by_http.setdefault(str(outcome.http_status), {}), agent)
        if outcome.decision_status:
            self._bump(self.by_decision.setdefault(outcome.decision_status, {}), agent)
        if outcome.result == OUT_OF_SCOPE:
            self._bump(self.out_of_scope, agent)
        if outcome.http_status == 429:
            self._bump(self.rate_limited, agent)
        elif outcome.http_status >= 500:
            self._bump(self.errors, agent)
        if outcome.http_status != 429 and not outcome.as_expected:
            self.unexpected.append(outcome)

    def total(self, counter: dict) -> int:
        return sum(counter.values())

    def percentile(self, share: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        rank = math.ceil(share * len(ordered))  # nearest rank
        return ordered[min(max(rank, 1), len(ordered)) - 1]
