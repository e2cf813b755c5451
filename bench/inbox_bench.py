"""Reviewer inbox benchmark: server time of the inbox pages over a million decisions.

Run it through `bench/inbox`, which creates the database, migrates it and sets the
environment. This script then, in one process:

1. creates users, action types, agents and behaviour versions with the services;
2. bulk-loads ROWS decisions (PENDING of them pending) and ~0.3 reviews per decided
   decision in SQL, then VACUUM ANALYZEs (as autovacuum would have);
3. times N requests (after a warm-up) per inbox endpoint through django.test.Client,
   logged in as a reviewer: p50/p95/max, SQL queries per request and their total time;
4. runs EXPLAIN (ANALYZE, BUFFERS) on every query slower than SLOW_MS.

Pending rows are spread evenly through the heap, not packed at its end: the worst case
for the heap fetches of the inbox queries.
"""

import os
import re
import statistics
import sys
import time
from itertools import cycle
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aispm_site.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import reverse  # noqa: E402

from agents import services as agent_services  # noqa: E402
from aispm_site import roles  # noqa: E402
from approvals import selectors  # noqa: E402
from approvals.models import Decision, Review  # noqa: E402

ROWS = int(os.environ.get("ROWS", "1000000"))
PENDING = int(os.environ.get("PENDING", "50000"))
N = int(os.environ.get("N", "200"))
WARMUP = int(os.environ.get("WARMUP", "20"))
CHUNK = int(os.environ.get("CHUNK", "100000"))
SLOW_MS = float(os.environ.get("SLOW_MS", "10"))
TARGET_MS = 150.0
REVIEWERS = 5

ACTION_TYPES = [
    # key, name, summary template, irreversible, risk, schema properties
    ("email.send", "Send email", "Email to {to}: {subject}", True, "", ["to", "subject", "body"]),
    ("crm.update", "Update CRM record", "Set {field} on {record}", False, "low", ["record"]),
    (
        "payment.transfer",
        "Transfer money",
        "Pay {amount} {currency} to {beneficiary}",
        True,
        "high",
        ["amount", "currency", "beneficiary", "iban", "reference"],
    ),
    ("refund.issue", "Issue refund", "Refund {amount} {currency} on {order_id}", True, "", []),
    ("ticket.reply", "Reply to ticket", "Reply on ticket {ticket_id}", False, "low", []),
    ("calendar.invite", "Send invite", "Invite {attendees} to {title}", False, "low", []),
    ("account.suspend", "Suspend account", "Suspend {account_id}", True, "high", []),
    ("data.export", "Export data", "Export {dataset} to {destination}", True, "medium", []),
]
AGENTS = [
    "sdr",
    "support",
    "finance",
    "billing",
    "renewals",
    "onboarding",
    "churn",
    "collections",
    "procurement",
    "recruiting",
    "it-helpdesk",
    "security",
    "marketing",
    "partnerships",
    "legal-intake",
    "payroll",
    "logistics",
    "success",
    "research",
    "ops",
]

# Text pools for the generated rows: realistic lengths, a little variety.
REASONS = [
    "The customer replied to the last follow-up asking for a quote for the team plan and"
    " mentioned a deadline at the end of the month.",
    "Usage in the trial workspace doubled this week and three admins invited colleagues,"
    " which usually precedes a purchase decision.",
    "The invoice matches the purchase order line by line and the supplier bank details"
    " are unchanged since the last payment run.",
    "The ticket has been open for four days, the customer asked twice, and the knowledge"
    " base article covers exactly this error.",
    "Order delivered late by nine days according to the carrier tracking, which our"
    " policy compensates with a partial refund.",
    "The account shows repeated failed logins from two countries within an hour, matching"
    " the credential stuffing pattern seen last month.",
    "The quarterly report needs the anonymised export and the destination bucket is on"
    " the approved list for analytics data.",
    "Renewal is due in 30 days, the champion changed roles, and the new contact has not"
    " yet been briefed on the contract terms.",
    "The lead attended the webinar, downloaded the pricing sheet and works at a company"
    " in our ideal customer profile.",
    "The candidate passed both interviews and the hiring manager asked to schedule the"
    " final round before Friday.",
    "Stock for the SKU fell below the reorder point and the usual supplier confirmed"
    " availability at last quarter's price.",
    "The customer asked to update the billing contact after their finance team moved to"
    " a shared mailbox last week.",
]
SENTENCES = [
    "Thanks for your message, happy to help with this.",
    "Here is the summary of what we discussed on the call yesterday.",
    "Could you confirm the details below before we proceed?",
    "We can offer 18 EUR per seat per month, billed annually.",
    "Let me know which of the proposed slots works best for your team.",
    "Attached is the document you asked for, with the figures for last quarter.",
    "Your request has been processed and you should see the change within a day.",
    "If anything is unclear, reply to this email and I will get back to you.",
    "We noticed the issue and have already started working on a fix.",
    "The refund will appear on your statement within five to ten business days.",
    "Our records show the invoice was paid on the 3rd; please double-check on your side.",
    "I have added your colleagues to the thread so everyone is in the loop.",
]
FIRST = ["maria", "james", "chen", "paula", "omar", "lena", "ravi", "sofia", "tom", "aiko"]
LAST = ["keller", "okafor", "wei", "silva", "haddad", "novak", "iyer", "rossi", "berg", "sato"]
COMPANY = ["northwind", "brightline", "orbitlabs", "harbor", "quietpines", "acme", "globex"]
SIGNALS = ["reply", "form_submission", "product_usage", "invoice", "ticket", "alert", "schedule"]
DATASETS = ["accounts", "invoices", "tickets", "usage_daily", "leads", "payroll_summary"]

DECISION_SQL = """
INSERT INTO approvals_decision (
    id, agent_id, action_type_id, key_id, status, approval, summary, params, approved_params,
    reasoning, evidence, confidence, idempotency_key, request_hash, external_ref,
    policy_outcome, policy_rule, policy_explanation, risk, bulk_allowed, required_approvals,
    behaviour_version, created_at, updated_at, expires_at, decided_at, decided_by_id,
    status_reason, release_attempts, release_result, released_at
)
SELECT
    gen_random_uuid(), agent_id, action_type_id, NULL, status, approval, summary, params,
    CASE WHEN status IN ('approved', 'released', 'failed', 'blocked') THEN params END,
    reasoning, evidence, confidence, NULL, md5(g::text) || md5((g + 1)::text),
    CASE WHEN r1 < 0.3 THEN 'REF-' || g ELSE '' END,
    CASE WHEN status = 'denied' THEN 'deny' WHEN approval = 'auto' THEN 'allow'
         ELSE 'review' END,
    agent_slug || '.' || action_key || CASE WHEN status = 'denied' THEN '.deny'
         WHEN approval = 'auto' THEN '.routine' ELSE '.review' END,
    CASE WHEN status = 'denied' THEN 'Denied: the target is outside the agent''s allow-list'
             || ' for ' || action_key || ' (policy rule, no human review possible).'
         WHEN approval = 'auto' THEN 'Allowed automatically: routine ' || action_key
             || ' within the limits of the agent''s policy and below the review threshold.'
         ELSE 'Sent for review: ' || action_key || ' at ' || risk || ' risk needs '
             || required_approvals || ' approval(s) under the agent''s current policy.' END,
    risk, risk = 'low' AND r2 < 0.5, required_approvals,
    CASE WHEN created_at > now() - interval '30 days' THEN 2 ELSE 1 END,
    created_at,
    COALESCE(released_at, decided_at, created_at),
    CASE WHEN status = 'pending' THEN now() + interval '5 minutes' + r_exp * interval '48 hours'
         ELSE created_at + interval '24 hours' END,
    decided_at,
    CASE WHEN approval = 'human' THEN (%(reviewers)s::bigint[])[1 + g %% %(n_reviewers)s] END,
    CASE status WHEN 'rejected' THEN 'Rejected: ' || (%(sentences)s::text[])[1 + g %% 12]
                WHEN 'expired' THEN 'No decision before it expired.'
                WHEN 'cancelled' THEN 'Cancelled by the agent.'
                WHEN 'blocked' THEN 'The agent''s key was revoked before release.'
                ELSE '' END,
    CASE status WHEN 'released' THEN 1 WHEN 'failed' THEN 3 ELSE 0 END,
    CASE status WHEN 'released' THEN jsonb_build_object('status', 200, 'id', 'rel-' || g)
                WHEN 'failed' THEN jsonb_build_object('status', 502,
                    'error', 'Bad gateway from the connector after 3 attempts') END,
    released_at
FROM (
    SELECT s.*, a.*,
        CASE ti
        WHEN 1 THEN jsonb_build_object(
            'to', jsonb_build_array(email), 'subject', subject,
            'body', sentence1 || E'\n\n' || sentence2 || ' ' || sentence3 || E'\n\nBest,\nSam')
        WHEN 2 THEN jsonb_build_object(
            'record', 'opportunity/' || (g %% 90000), 'field', 'next_step',
            'value', sentence1, 'note', sentence2 || ' ' || sentence3)
        WHEN 3 THEN jsonb_build_object(
            'amount', amount, 'currency', currency, 'beneficiary', initcap(company) || ' GmbH',
            'iban', 'DE89370400440532' || lpad((g %% 1000000)::text, 6, '0'),
            'reference', 'INV-' || g, 'memo', sentence1 || ' ' || sentence2)
        WHEN 4 THEN jsonb_build_object(
            'order_id', 'ORD-' || g, 'amount', round(amount / 20, 2), 'currency', currency,
            'reason', sentence1 || ' ' || sentence2, 'customer', email)
        WHEN 5 THEN jsonb_build_object(
            'ticket_id', 'T-' || g, 'body', sentence1 || ' ' || sentence2 || ' ' || sentence3,
            'status_after', 'solved')
        WHEN 6 THEN jsonb_build_object(
            'attendees', jsonb_build_array(email, 'sam@aispm.example'),
            'title', 'Call with ' || initcap(company), 'start',
            to_char(created_at + interval '3 days', 'YYYY-MM-DD"T"HH24:00:00"Z"'),
            'duration_minutes', 30, 'agenda', sentence1 || ' ' || sentence2)
        WHEN 7 THEN jsonb_build_object(
            'account_id', 'acct_' || g, 'reason', sentence1 || ' ' || sentence2,
            'notify', true, 'contact', email)
        ELSE jsonb_build_object(
            'dataset', dataset, 'destination', 's3://analytics-exports/' || dataset || '/',
            'columns', jsonb_build_array('id', 'created_at', 'status', 'amount', 'region'),
            'filters', jsonb_build_object('since', '2026-01-01', 'region', 'eu'),
            'note', sentence1)
        END AS params,
        CASE ti
        WHEN 1 THEN 'Email to ' || email || ': ' || subject
        WHEN 2 THEN 'Set next_step on opportunity/' || (g %% 90000)
        WHEN 3 THEN 'Pay ' || amount || ' ' || currency || ' to ' || initcap(company) || ' GmbH'
        WHEN 4 THEN 'Refund ' || round(amount / 20, 2) || ' ' || currency || ' on ORD-' || g
        WHEN 5 THEN 'Reply on ticket T-' || g
        WHEN 6 THEN 'Invite ' || email || ' to Call with ' || initcap(company)
        WHEN 7 THEN 'Suspend acct_' || g
        ELSE 'Export ' || dataset || ' to s3://analytics-exports/' || dataset || '/'
        END AS summary,
        (%(reasons)s::text[])[1 + (g * 7 + g / 13) %% 12] || ' '
            || (%(reasons)s::text[])[1 + (g * 11 + g / 17 + 3) %% 12] || ' '
            || (%(sentences)s::text[])[1 + (g * 5 + g / 7) %% 12] AS reasoning,
        jsonb_build_object(
            'signal', (%(signals)s::text[])[1 + g %% 7], 'thread', 'thr-' || (g %% 500000),
            'contact', person, 'company', company, 'score', round(r2::numeric, 2),
            'observed', (%(reasons)s::text[])[1 + (g * 3 + g / 11 + 1) %% 12],
            'history', jsonb_build_array('opened ' || (g %% 9) || 'x', 'replied',
                'visited pricing ' || (g %% 4) || 'x')) AS evidence,
        round((0.4 + 0.6 * r3)::numeric, 2)::float AS confidence
    FROM (
        SELECT *,
            CASE WHEN status IN ('pending', 'expired') THEN NULL
                 WHEN status = 'denied' THEN created_at
                 ELSE created_at + r_exp * interval '4 hours' END AS decided_at,
            CASE WHEN status = 'released'
                 THEN created_at + r_exp * interval '4 hours' + interval '1 minute' END
                 AS released_at,
            CASE WHEN risk = 'critical' THEN 2 ELSE 1 END AS required_approvals,
            CASE WHEN status = 'rejected' THEN 'human'
                 WHEN status IN ('approved', 'released', 'failed', 'blocked')
                 THEN CASE WHEN r_human < 0.42 THEN 'human' ELSE 'auto' END
                 ELSE '' END AS approval
        FROM (
            SELECT g, r1, r2, r3, r_exp, r_human, ai, ti,
                CASE WHEN is_pending THEN 'pending'
                     WHEN r_status < 0.18 THEN 'approved'
                     WHEN r_status < 0.50 THEN 'released'
                     WHEN r_status < 0.54 THEN 'failed'
                     WHEN r_status < 0.56 THEN 'blocked'
                     WHEN r_status < 0.66 THEN 'denied'
                     WHEN r_status < 0.74 THEN 'rejected'
                     WHEN r_status < 0.92 THEN 'expired'
                     ELSE 'cancelled' END AS status,
                CASE WHEN r_risk < 0.35 THEN 'low' WHEN r_risk < 0.65 THEN 'medium'
                     WHEN r_risk < 0.90 THEN 'high' ELSE 'critical' END AS risk,
                CASE WHEN is_pending THEN now() - r_time * interval '72 hours'
                     ELSE now() - r_time * interval '90 days' END AS created_at
            FROM (
                SELECT g,
                    (g * %(pending)s) / %(rows)s <> ((g - 1) * %(pending)s) / %(rows)s
                        AS is_pending,
                    1 + floor(random() * %(n_agents)s)::int AS ai,
                    1 + floor(random() * 8)::int AS ti,
                    random() AS r_status, random() AS r_risk, random() AS r_time,
                    random() AS r_exp, random() AS r_human,
                    random() AS r1, random() AS r2, random() AS r3
                FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g
            ) draws
        ) base
    ) s
    CROSS JOIN LATERAL (
        SELECT (%(agent_ids)s::uuid[])[ai] AS agent_id,
            (%(agent_slugs)s::text[])[ai] AS agent_slug,
            (%(action_ids)s::bigint[])[ti] AS action_type_id,
            (%(action_keys)s::text[])[ti] AS action_key,
            (%(first)s::text[])[1 + g %% 10] || ' '
                || (%(last)s::text[])[1 + (g / 10) %% 10] AS person,
            (%(first)s::text[])[1 + g %% 10] || '.' || (%(last)s::text[])[1 + (g / 10) %% 10]
                || '@' || (%(company)s::text[])[1 + (g / 100) %% 7] || '.example' AS email,
            (%(company)s::text[])[1 + (g / 100) %% 7] AS company,
            round((50 + r1 * 25000)::numeric, 2) AS amount,
            (ARRAY['EUR', 'USD', 'GBP'])[1 + g %% 3] AS currency,
            (%(datasets)s::text[])[1 + g %% 6] AS dataset,
            (%(sentences)s::text[])[1 + (g + g / 19) %% 12] AS sentence1,
            (%(sentences)s::text[])[1 + (g * 7 + 2) %% 12] AS sentence2,
            (%(sentences)s::text[])[1 + (g * 11 + 5) %% 12] AS sentence3,
            (ARRAY['Pricing for 40 seats', 'Demo slots next week', 'Your trial ends Friday',
                   'Following up on our call', 'Invoice question', 'Contract renewal'])
                [1 + g %% 6] AS subject
    ) a
) generated
"""

# One review per human-decided decision (a share of the decided ones), plus the first
# of two approvals on half of the pending decisions that need two.
REVIEW_SQL = """
INSERT INTO approvals_review (
    decision_id, reviewer_id, verdict, comment, tags, params_before, params_after, created_at
)
SELECT id, reviewer_id, verdict,
    CASE WHEN verdict = 'reject' THEN status_reason
         WHEN r < 0.5 THEN 'Checked against the source record; ' || lower(summary)
         ELSE '' END,
    CASE WHEN verdict = 'reject' THEN '["tone", "wrong amount"]'::jsonb ELSE '[]'::jsonb END,
    CASE WHEN verdict = 'edit_approve' THEN params END,
    CASE WHEN verdict = 'edit_approve' THEN approved_params END,
    created_at_review
FROM (
    SELECT id, status, status_reason, summary, params, approved_params, r,
        CASE WHEN status = 'pending' THEN (%(reviewers)s::bigint[])[2 + (r * 1000)::int %% 4]
             ELSE decided_by_id END AS reviewer_id,
        CASE WHEN status = 'rejected' THEN 'reject' WHEN r < 0.1 THEN 'edit_approve'
             ELSE 'approve' END AS verdict,
        COALESCE(decided_at, LEAST(now(), created_at + interval '10 minutes'))
            AS created_at_review
    FROM (SELECT *, random() AS r FROM approvals_decision
          WHERE (approval = 'human' AND status <> 'pending')
             OR (status = 'pending' AND required_approvals = 2)) d
    WHERE status <> 'pending' OR r < 0.5
) reviews
"""


# The indexes proposed by the benchmark's analysis (see bench/README.md), applied only
# with PROPOSED_INDEXES=1 to measure their effect before they become a migration.
PROPOSED_INDEXES = [
    'CREATE INDEX IF NOT EXISTS "decision_pending_created" ON "approvals_decision" '
    '("created_at") INCLUDE ("id") WHERE "status" = \'pending\'',
    'CREATE INDEX IF NOT EXISTS "decision_agent_outcome" ON "approvals_decision" '
    '("agent_id", "status", "approval") INCLUDE ("id")',
]
WITH_PROPOSED = os.environ.get("PROPOSED_INDEXES", "") == "1"


def log(message: str) -> None:
    print(message, flush=True)


def seed() -> dict:
    """Users, action types, agents and behaviour versions, through the services."""
    User = get_user_model()
    reviewers_group = Group.objects.get(name=roles.REVIEWERS)
    reviewers = []
    for i in range(REVIEWERS):
        user = User.objects.create(
            username="bench-reviewer" if i == 0 else f"bench-reviewer-{i + 1}",
            email=f"reviewer{i + 1}@aispm.example",
        )
        user.groups.add(reviewers_group)
        reviewers.append(user)
    owner = User.objects.create(username="bench-owner", email="owner@aispm.example")
    owner.groups.add(Group.objects.get(name=roles.AGENT_ADMINS))

    actions = []
    for key, name, summary, irreversible, risk, required in ACTION_TYPES:
        schema = {
            "type": "object",
            "required": required,
            "properties": {field: {"type": ["string", "number", "array"]} for field in required},
        }
        applied = agent_services.action_type_apply(
            key=key,
            name=name,
            summary_template=summary,
            params_schema=schema,
            irreversible=irreversible,
            risk=risk,
            actor=owner,
        )
        actions.append(applied.instance)

    agents = []
    for slug in AGENTS:
        agent = agent_services.agent_apply(
            slug=f"{slug}-agent", name=f"{slug.replace('-', ' ').title()} agent", owner=owner
        ).instance
        for number in (1, 2):
            version = agent_services.behaviour_version_create(
                agent=agent,
                instructions=f"You are the {slug} agent. Propose actions; never act alone.",
                settings={"model": "gpt-x", "temperature": 0.2, "revision": number},
                policy=[],
                note=f"v{number}",
                actor=owner,
            )
        agent_services.behaviour_version_activate(version=version, actor=owner)
        agents.append(agent)
    return {"reviewers": reviewers, "actions": actions, "agents": agents}


def inserted_columns(sql: str) -> set[str]:
    """The column list of the INSERT in `sql`."""
    return {name.strip() for name in re.search(r"\(([^)]*)\)", sql).group(1).split(",")}


def model_defaults(cursor, model, sql: str) -> list[str]:
    """Give the columns added to `model` after this script was written (NOT NULL and not
    filled by `sql`) their model default in the database for the load; returns them."""
    table = model._meta.db_table
    listed = inserted_columns(sql)
    added = []
    for field in model._meta.concrete_fields:
        if (
            field.column in listed
            or field.generated
            or field.null
            or field.has_db_default()
            or not field.has_default()
        ):
            continue
        value = field.get_db_prep_save(field.get_default(), connection)
        cursor.execute(
            f'ALTER TABLE "{table}" ALTER COLUMN "{field.column}" SET DEFAULT %s', [value]
        )
        added.append(field.column)
    return added


def load(seeded: dict) -> None:
    params = {
        "rows": ROWS,
        "pending": PENDING,
        "n_agents": len(seeded["agents"]),
        "agent_ids": [agent.pk for agent in seeded["agents"]],
        "agent_slugs": [agent.slug for agent in seeded["agents"]],
        "action_ids": [action.pk for action in seeded["actions"]],
        "action_keys": [action.key for action in seeded["actions"]],
        "reviewers": [user.pk for user in seeded["reviewers"]],
        "n_reviewers": len(seeded["reviewers"]),
        "reasons": REASONS,
        "sentences": SENTENCES,
        "signals": SIGNALS,
        "first": FIRST,
        "last": LAST,
        "company": COMPANY,
        "datasets": DATASETS,
    }
    with connection.cursor() as cursor:
        defaults = {
            Decision: model_defaults(cursor, Decision, DECISION_SQL),
            Review: model_defaults(cursor, Review, REVIEW_SQL),
        }
        # The rows reference existing ids by construction: skip the per-row FK triggers.
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("SET synchronous_commit = off")
        for lo in range(1, ROWS + 1, CHUNK):
            hi = min(lo + CHUNK - 1, ROWS)
            started = time.perf_counter()
            cursor.execute("SELECT setseed(%s)", [(lo % 997) / 997])
            cursor.execute(DECISION_SQL, {**params, "lo": lo, "hi": hi})
            log(f"  decisions {hi:>9,} / {ROWS:,}  ({time.perf_counter() - started:.1f} s)")
        started = time.perf_counter()
        cursor.execute(REVIEW_SQL, params)
        log(f"  reviews   {cursor.rowcount:>9,}  ({time.perf_counter() - started:.1f} s)")
        cursor.execute("SET session_replication_role = origin")
        for model, columns in defaults.items():
            for column in columns:
                cursor.execute(
                    f'ALTER TABLE "{model._meta.db_table}" ALTER COLUMN "{column}" DROP DEFAULT'
                )
        started = time.perf_counter()
        cursor.execute("SET maintenance_work_mem = '256MB'")
        if WITH_PROPOSED:
            for statement in PROPOSED_INDEXES:
                cursor.execute(statement)
        cursor.execute("VACUUM (ANALYZE) approvals_decision")
        cursor.execute("VACUUM (ANALYZE) approvals_review")
        log(f"  vacuum analyze  ({time.perf_counter() - started:.1f} s)")


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(client: Client, name: str, urls, headers=None) -> dict:
    urls = cycle(urls if isinstance(urls, list) else [urls])
    headers = headers or {}
    for _ in range(WARMUP):
        response = client.get(next(urls), headers=headers)
        assert response.status_code == 200, (name, response.status_code)
    samples = []
    for _ in range(N):
        url = next(urls)
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (name, response.status_code)
    timings = []

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            timings.append((time.perf_counter() - started) * 1000)

    with CaptureQueriesContext(connection) as captured, connection.execute_wrapper(timed):
        response = client.get(next(urls), headers=headers)
    queries = list(zip(timings, (q["sql"] for q in captured.captured_queries), strict=True))
    return {
        "name": name,
        "p50": statistics.median(samples),
        "p95": percentile(samples, 0.95),
        "max": max(samples),
        "queries": len(queries),
        "sql_ms": sum(ms for ms, _sql in queries),
        "bytes": len(response.content),
        "captured": queries,
    }


def shape(sql: str) -> str:
    return re.sub(r"'[^']*'|\b\d+(\.\d+)?\b", "?", sql)


def explain_slow(results: list[dict]) -> None:
    seen = set()
    slow = []
    for result in results:
        for ms, sql in result["captured"]:
            if ms >= SLOW_MS and shape(sql) not in seen:
                seen.add(shape(sql))
                slow.append((result["name"], ms, sql))
    if not slow:
        log(f"\nNo query took {SLOW_MS:g} ms or more.")
        return
    with connection.cursor() as cursor:
        for name, ms, sql in slow:
            log(f"\n--- slow query ({ms:.1f} ms, first seen in {name}) ---\n{sql}\n")
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
            log("\n".join(row[0] for row in cursor.fetchall()))


def main() -> None:
    if not 0 < PENDING <= ROWS:
        sys.exit("PENDING must be between 1 and ROWS")
    database = connection.settings_dict["NAME"]
    log(f"inbox benchmark: {ROWS:,} decisions, {PENDING:,} pending, database {database}")
    started = time.perf_counter()
    seeded = seed()
    log(f"seeded users, 8 action types, 20 agents ({time.perf_counter() - started:.1f} s)")
    started = time.perf_counter()
    load(seeded)
    load_seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('approvals_decision'))")
        size = cursor.fetchone()[0]
    log(f"load: {load_seconds:.0f} s; approvals_decision with indexes: {size}")

    client = Client()
    client.force_login(seeded["reviewers"][0])
    pending = Decision.objects.filter(status=Decision.Status.PENDING).order_by(
        "-risk_rank", "expires_at", "id"
    )
    depth = PENDING // 2
    deep = pending.only("id", "risk_rank", "expires_at")[depth]
    cursor = selectors._inbox_key(deep)
    agent = seeded["agents"][3].slug
    # One pending decision per agent, from all over the list, opened in turn.
    details = [
        reverse("approvals:detail", args=[decision_id])
        for decision_id in (
            Decision.objects.filter(status=Decision.Status.PENDING, agent=each)
            .values_list("id", flat=True)
            .first()
            for each in seeded["agents"]
        )
        if decision_id
    ]
    fragment = {"HX-Request": "true", "HX-Target": "decision-detail"}
    inbox = reverse("approvals:inbox")
    cases = [
        ("inbox first page", inbox, None),
        (f"inbox risk=high&agent={agent}", f"{inbox}?risk=high&agent={agent}", None),
        (f"inbox deep page (row {depth:,})", f"{inbox}?after={cursor}", None),
        ("detail, full page", details, None),
        ("detail, htmx fragment", details, fragment),
        ("counter", reverse("approvals:counter"), None),
    ]
    results = []
    for name, urls, headers in cases:
        started = time.perf_counter()
        results.append(measure(client, name, urls, headers))
        log(f"  measured {name} ({time.perf_counter() - started:.0f} s)")

    width = max(len(r["name"]) for r in results)
    columns = "".join(f"  {title:>7}" for title in ("p50", "p95", "max", "queries", "sql ms"))
    header = f"{'request':<{width}}{columns}"
    lines = [
        "",
        f"Reviewer inbox, {ROWS:,} decisions ({PENDING:,} pending), N={N} after {WARMUP} "
        f"warm-up, server time in ms (django.test.Client, DEBUG off)"
        + (", with the proposed indexes" if WITH_PROPOSED else ""),
        header,
        "-" * len(header),
    ]
    for r in results:
        lines.append(
            f"{r['name']:<{width}}  {r['p50']:7.1f}  {r['p95']:7.1f}  {r['max']:7.1f}  "
            f"{r['queries']:7d}  {r['sql_ms']:7.1f}"
        )
    lines.append("(queries and sql ms: one extra request, captured after the timed ones)")
    lines.append("load average at the end: " + ", ".join(f"{v:.1f}" for v in os.getloadavg()))
    for r in results:
        if r["name"] in ("inbox first page", "detail, full page", "detail, htmx fragment"):
            verdict = "ok" if r["p95"] < TARGET_MS else "MISSED"
            lines.append(f"target p95 < {TARGET_MS:g} ms, {r['name']}: {verdict}")
    log("\n".join(lines))
    explain_slow(results)


if __name__ == "__main__":
    main()
