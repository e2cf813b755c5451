"""The support-agent's traffic: refunds, replies, CRM notes, and misfires."""

import random

from .common import (
    APPROVED,
    CURRENCIES,
    OUT_OF_SCOPE,
    PENDING,
    PRODUCTS,
    SUPPLIERS,
    SimRequest,
    _amount,
    _confidence,
    _email,
    _order,
    _person,
    _ticket,
)

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
