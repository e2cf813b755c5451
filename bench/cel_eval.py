"""CEL evaluation rate for a three-clause rule compiled once (the policy hot path).

.venv/bin/python bench/cel_eval.py
"""

import time

import cel

EXPRESSION = "params.amount > 1000 && params.currency == 'EUR' && confidence < 0.9"
ACTIVATION = {
    "params": {"amount": 1500, "currency": "EUR", "to": ["a@example.com"]},
    "evidence": {"signal": "reply"},
    "confidence": 0.8,
    "agent": {"slug": "finance-agent"},
    "action": {"key": "payment.transfer"},
}


def main(seconds: float = 3.0) -> None:
    program = cel.compile(EXPRESSION)
    assert program.execute(ACTIVATION) is True
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(1000):
            program.execute(ACTIVATION)
        count += 1000
    elapsed = time.perf_counter() - start
    print(f"common-expression-language: {count / elapsed:,.0f} evaluations/s ({EXPRESSION})")


if __name__ == "__main__":
    main()
