"""Notifications to reviewers by email and chat webhooks (issue 17)."""

from .services import (  # noqa: F401
    CHAT_CHANNELS,
    PreferenceRefused,
    digests_due,
    notification_deliver,
    notification_record,
    notifications_for_decision,
    notify_new_decisions,
    preference_save,
)
