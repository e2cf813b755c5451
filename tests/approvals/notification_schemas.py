"""The shapes chat platforms document for incoming-webhook payloads, as JSON Schema.

Slack publishes Block Kit as reference pages, not a schema file; this transcribes the
limits of the parts aispm uses (https://api.slack.com/reference/block-kit/blocks,
.../composition-objects#text, .../block-elements#button): at most 50 blocks; a header's
text is plain_text up to 150 characters; a section's text up to 3,000 and at most 10
fields of up to 2,000; an actions block up to 25 elements; a button's text plain_text up
to 75, its url up to 3,000, action_id up to 255, style primary or danger.

Teams takes an Adaptive Card inside a message envelope
(https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using#send-adaptive-cards-using-an-incoming-webhook);
the card part follows the published schema at http://adaptivecards.io/schemas/adaptive-card.json
for TextBlock, FactSet and Action.OpenUrl, version 1.4 or lower as Teams requires.
"""

_PLAIN = {
    "type": "object",
    "required": ["type", "text"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "plain_text"},
        "text": {"type": "string", "minLength": 1},
        "emoji": {"type": "boolean"},
    },
}


def _plain(max_length: int) -> dict:
    return {
        **_PLAIN,
        "properties": {
            **_PLAIN["properties"],
            "text": {"type": "string", "minLength": 1, "maxLength": max_length},
        },
    }


SLACK = {
    "type": "object",
    "required": ["blocks"],
    "properties": {
        "text": {"type": "string"},
        "blocks": {
            "type": "array",
            "maxItems": 50,
            "items": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["type", "text"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"const": "header"},
                            "text": _plain(150),
                            "block_id": {"type": "string"},
                        },
                    },
                    {
                        "type": "object",
                        "required": ["type"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"const": "section"},
                            "text": _plain(3000),
                            "fields": {"type": "array", "maxItems": 10, "items": _plain(2000)},
                            "block_id": {"type": "string"},
                        },
                    },
                    {
                        "type": "object",
                        "required": ["type", "elements"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"const": "actions"},
                            "elements": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": 25,
                                "items": {
                                    "type": "object",
                                    "required": ["type", "text"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "type": {"const": "button"},
                                        "text": _plain(75),
                                        "url": {
                                            "type": "string",
                                            "maxLength": 3000,
                                            "pattern": "^https?://",
                                        },
                                        "action_id": {"type": "string", "maxLength": 255},
                                        "style": {"enum": ["primary", "danger"]},
                                        "value": {"type": "string", "maxLength": 2000},
                                    },
                                },
                            },
                            "block_id": {"type": "string"},
                        },
                    },
                ]
            },
        },
    },
}

_TEXT_BLOCK = {
    "type": "object",
    "required": ["type", "text"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "TextBlock"},
        "text": {"type": "string"},
        "wrap": {"type": "boolean"},
        "weight": {"enum": ["Default", "Lighter", "Bolder"]},
        "size": {"enum": ["Default", "Small", "Medium", "Large", "ExtraLarge"]},
    },
}
_FACT_SET = {
    "type": "object",
    "required": ["type", "facts"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "FactSet"},
        "facts": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["title", "value"],
                "additionalProperties": False,
                "properties": {"title": {"type": "string"}, "value": {"type": "string"}},
            },
        },
    },
}
_OPEN_URL = {
    "type": "object",
    "required": ["type", "url"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "Action.OpenUrl"},
        "title": {"type": "string"},
        "url": {"type": "string", "pattern": "^https?://"},
    },
}
TEAMS = {
    "type": "object",
    "required": ["type", "attachments"],
    "properties": {
        "type": {"const": "message"},
        "attachments": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["contentType", "content"],
                "properties": {
                    "contentType": {"const": "application/vnd.microsoft.card.adaptive"},
                    "contentUrl": {"type": "null"},
                    "content": {
                        "type": "object",
                        "required": ["type", "version", "body"],
                        "properties": {
                            "$schema": {
                                "const": "http://adaptivecards.io/schemas/adaptive-card.json"
                            },
                            "type": {"const": "AdaptiveCard"},
                            "version": {"enum": ["1.0", "1.1", "1.2", "1.3", "1.4"]},
                            "body": {"type": "array", "items": {"oneOf": [_TEXT_BLOCK, _FACT_SET]}},
                            "actions": {"type": "array", "items": _OPEN_URL},
                        },
                    },
                },
            },
        },
    },
}
