"""The sdr-agent's traffic: follow-up emails, CRM notes and changes, and misfires."""

import random
from datetime import date, timedelta

from .common import (
    APPROVED,
    COMPANIES,
    DENIED,
    EVENTS,
    OUT_OF_SCOPE,
    PENDING,
    REPS,
    STAGES,
    SUPPLIERS,
    SimRequest,
    _amount,
    _confidence,
    _email,
    _person,
)


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
