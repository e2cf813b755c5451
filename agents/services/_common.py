"""What the agents services share: their refusal, the result of a declarative write,
and actor helpers."""

from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings
from django.db.models import F

from ..models import ActionType, Agent


class AgentsRefusal(Exception):
    """An agents service refused the change; the message says why, in words for the
    person who asked (views show it as a form error)."""


@dataclass(frozen=True)
class Applied[T]:
    """What an ``*_apply`` service did: created the row, changed some fields, or nothing."""

    instance: T
    created: bool = False
    changed: tuple[str, ...] = ()

    @property
    def happened(self) -> bool:
        return self.created or bool(self.changed)


@dataclass(frozen=True)
class ActionTypeApplied(Applied[ActionType]):
    # Set only when this call generated a webhook secret; it is never stored in clear.
    generated_secret: str = ""


def _user_or_none(actor: Any):
    if actor is None or isinstance(actor, str):
        return None
    return actor if actor._meta.label == django_settings.AUTH_USER_MODEL else None


def _username(user) -> str | None:
    return user.get_username() if user is not None else None


def _bump_scope(**filters) -> None:
    Agent.objects.filter(**filters).update(scope_version=F("scope_version") + 1)
