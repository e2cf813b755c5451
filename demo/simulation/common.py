"""What every generator shares: the request shape, the expected outcomes, the pools."""

import random
from dataclasses import dataclass

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
