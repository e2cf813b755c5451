"""The finance-agent's traffic: supplier payments and emails, and misfires."""

import random

from .common import (
    CURRENCIES,
    DENIED,
    OUT_OF_SCOPE,
    PENDING,
    SUPPLIERS,
    SimRequest,
    _amount,
    _confidence,
    _email,
    _invoice,
    _person,
)


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
