"""What a notification says, per channel. Agent-written text is escaped for each format.

The summary is the action type's canonical one-liner, but its values come from the
agent's params, so it is hostile. People read it with its money formatted
(approvals.readable) in the default locale, since a message does not know its reader's;
the JSON payload, for machines, carries the stored summary.
Either way it is hostile: control and invisible characters are shown as marked
code points, and each chat format gets its own escaping. Nothing here is ever markup
from the agent.
"""

import re
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.urls import reverse

from ..invisible import INVISIBLE, marker
from ..models import Decision
from ..readable import readable_summary
from . import links

SUMMARY_CHARS = 300
# Control characters other than the invisible set (which includes the bidi controls).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# CommonMark punctuation that Teams' Adaptive Card markdown would interpret.
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")


def plain(text: str, *, limit: int = SUMMARY_CHARS) -> str:
    """One line of display text: no control, bidi or invisible characters, bounded."""
    text = INVISIBLE.sub(lambda m: marker(m.group()), str(text))
    text = _CONTROL.sub(lambda m: marker(m.group()), text)
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def public_url(path: str) -> str:
    return settings.AISPM_PUBLIC_URL + path


@dataclass(frozen=True)
class Item:
    decision_id: str
    action: str
    agent: str
    summary: str
    readable: str
    risk: str
    expires_at: datetime | None
    url: str
    approve_url: str


def item_for(decision: Decision) -> Item:
    return Item(
        decision_id=str(decision.pk),
        action=decision.action_type.key,
        agent=decision.agent.slug,
        summary=plain(decision.summary or decision.action_type.key),
        # Written for whoever receives it, not for the request that happens to send it.
        readable=plain(readable_summary(decision, language=settings.LANGUAGE_CODE)),
        risk=decision.risk,
        expires_at=decision.expires_at,
        url=public_url(reverse("approvals:detail", args=[decision.pk])),
        approve_url=public_url(links.approve_path(decision)),
    )


def _expiry(item: Item) -> str:
    return item.expires_at.strftime("%Y-%m-%d %H:%M UTC") if item.expires_at else "no expiry"


def title(items: list[Item], kind: str) -> str:
    if kind == "digest":
        return f"{len(items)} decision(s) waiting for review"
    prefix = "Escalated: " if kind == "escalated" else ""
    item = items[0]
    return f"{prefix}[{item.risk}] {item.action} by {item.agent}"


def email_subject(items: list[Item], kind: str) -> str:
    return plain(f"aispm: {title(items, kind)}", limit=200)


def email_body(items: list[Item], kind: str) -> str:
    lines = [title(items, kind), ""]
    for item in items:
        lines += [
            f"{item.readable}",
            f"  risk: {item.risk}; expires: {_expiry(item)}",
            f"  open: {item.url}",
            "",
        ]
    lines.append("Approve or reject in the inbox; a link never approves on its own.")
    return "\n".join(lines)


def _slack(text: str) -> str:
    """Slack's control characters, escaped as its docs require, in every text field."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(items: list[Item], kind: str) -> dict:
    """Block Kit: agent text only in plain_text objects, which Slack never formats."""
    blocks: list[dict] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _slack(plain(title(items, kind), limit=100))},
        }
    ]
    for item in items[:10]:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "plain_text", "text": _slack(item.readable), "emoji": False},
                "fields": [
                    {"type": "plain_text", "text": f"Risk: {item.risk}"},
                    {"type": "plain_text", "text": f"Expires: {_expiry(item)}"},
                ],
            }
        )
        elements = [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Open in inbox"},
                "url": item.url,
                "action_id": f"open-{item.decision_id}",
            }
        ]
        if kind != "digest":
            elements.append(
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Approve…"},
                    "url": item.approve_url,
                    "style": "primary",
                    "action_id": f"approve-{item.decision_id}",
                }
            )
        blocks.append({"type": "actions", "elements": elements})
    return {"text": _slack(plain(title(items, kind), limit=100)), "blocks": blocks[:50]}


def _md(text: str) -> str:
    return _MARKDOWN.sub(r"\\\1", text)


def teams_payload(items: list[Item], kind: str) -> dict:
    """An Adaptive Card (1.4) in the message envelope Teams incoming webhooks take."""
    body: list[dict] = [
        {"type": "TextBlock", "text": _md(title(items, kind)), "weight": "Bolder", "wrap": True}
    ]
    actions: list[dict] = []
    for item in items[:10]:
        body.append({"type": "TextBlock", "text": _md(item.readable), "wrap": True})
        body.append(
            {
                "type": "FactSet",
                "facts": [
                    {"title": "Risk", "value": item.risk},
                    {"title": "Expires", "value": _expiry(item)},
                ],
            }
        )
    first = items[0]
    actions.append({"type": "Action.OpenUrl", "title": "Open in inbox", "url": first.url})
    if kind != "digest":
        actions.append({"type": "Action.OpenUrl", "title": "Approve…", "url": first.approve_url})
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "actions": actions,
    }
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def json_payload(items: list[Item], kind: str) -> dict:
    """aispm's own shape, published as approvals/notifications/generic.schema.json."""
    return {
        "type": f"aispm.decisions.{kind}",
        "title": title(items, kind),
        "decisions": [
            {
                "id": item.decision_id,
                "action": item.action,
                "agent": item.agent,
                "summary": item.summary,
                "risk": item.risk,
                "expires_at": item.expires_at.isoformat() if item.expires_at else None,
                "url": item.url,
                "approve_url": item.approve_url if kind != "digest" else None,
            }
            for item in items
        ],
    }


PAYLOADS = {"slack": slack_payload, "teams": teams_payload, "json": json_payload}
