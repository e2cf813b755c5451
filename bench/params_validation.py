"""Params validation on the ingest path: the Python `jsonschema` validator the pipeline
used before, against `approvals.scope.checked_params` (jsonschema-rs, strict destination
formats and canonicalisation), on the demo and benchmark schemas. "rs only" is
jsonschema-rs alone with its built-in formats: what the switch costs without the
stricter address checks.

.venv/bin/python bench/params_validation.py        (N=2000 calls per round, best of 5)

No database: the action types are stand-ins with the fields scope reads.
"""

import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aispm_site.test_settings")

import django  # noqa: E402

django.setup()

import yaml  # noqa: E402
from jsonschema import Draft202012Validator, FormatChecker  # noqa: E402

from agents.params_schema import compile_params_schema  # noqa: E402
from approvals import formats, scope  # noqa: E402

SHARED = Path(os.environ.get("SHARED_BENCH", ROOT.parent / "shared" / "bench"))


class StandIn:
    def __init__(self, pk: int, schema: dict):
        self.pk, self.params_schema = pk, schema
        self.updated_at = datetime(2026, 1, 1, tzinfo=UTC)


def best_of(fn, n: int, rounds: int = 5) -> float:
    """Microseconds per call."""
    fn(0)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def cases() -> dict:
    demo = {
        a["key"]: a["params_schema"]
        for a in yaml.safe_load((ROOT / "demo/governance.yaml").read_text())["action_types"]
    }
    bench = yaml.safe_load((SHARED / "governance.yaml").read_text())["action_types"][0]
    return {
        # The body ../shared/bench/floor/post.lua sends: one new recipient a request.
        "ingest email.send (post.lua)": (
            bench["params_schema"],
            lambda i: {
                "to": [f"lead{i}@example.com"],
                "subject": "Follow-up on pricing",
                "body": "Hi, following up on the pricing question from Tuesday.",
            },
        ),
        "demo email.send, 50 new recipients": (
            demo["email.send"],
            lambda i: {
                "to": [f"lead{i}-{n}@example.com" for n in range(50)],
                "subject": "News",
                "body": "x" * 2000,
            },
        ),
        "demo crm.update": (
            demo["crm.update"],
            lambda i: {"record": f"lead/{i + 1}", "field": "stage", "value": "qualified"},
        ),
        "demo payment.transfer": (
            demo["payment.transfer"],
            lambda i: {
                "amount": 720,
                "currency": "EUR",
                "beneficiary": "Acme GmbH",
                "iban": "DE89370400440532013000",
                "reference": f"INV-{i}",
            },
        ),
        "demo refund.issue": (
            demo["refund.issue"],
            lambda i: {
                "order_id": f"ORD-{10000 + i}",
                "amount": 40,
                "currency": "EUR",
                "reason": "Late",
            },
        ),
    }


def _checked(stand_in, params):
    formats.canonical_email.cache_clear()  # every address new, as on the ingest path
    return scope.checked_params(action_type=stand_in, params=params)


def main() -> None:
    n = int(os.environ.get("N", 2000))
    print(f"{'µs a call, best of 5 x ' + str(n):36} {'before':>12} {'rs only':>15} {'after':>15}")
    for pk, (name, (schema, make)) in enumerate(cases().items(), start=1):
        python = Draft202012Validator(schema, format_checker=FormatChecker())
        stand_in = StandIn(pk, schema)
        bodies = [make(i) for i in range(n)]
        for body in bodies[:50]:
            assert not list(python.iter_errors(body)), name
            assert not scope.checked_params(action_type=stand_in, params=body).errors, name
        before = best_of(lambda i, v=python, b=bodies: list(v.iter_errors(b[i])), n)
        rust = compile_params_schema(schema)
        rust_only = best_of(lambda i, v=rust, b=bodies: v.is_valid(b[i]), n)
        after = best_of(lambda i, a=stand_in, b=bodies: _checked(a, b[i]), n)
        print(f"{name:36} {before:12.1f} {rust_only:15.1f} {after:15.1f}")


if __name__ == "__main__":
    main()
