"""The API's representations as frozen dataclasses. `raw` keeps the JSON as received."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PENDING = "pending"
APPROVED_STATUSES = frozenset({"approved", "releasing", "released"})
# Approved, but the release (the connector, or for connector `none` the notice to
# the agent) has not finished yet.
RELEASE_PENDING = frozenset({"approved", "releasing"})


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    return datetime.fromisoformat(value)


@dataclass(frozen=True)
class Policy:
    outcome: str
    rule: str
    explanation: str


@dataclass(frozen=True)
class Review:
    verdict: str
    comment: str
    tags: list[str]
    reviewer: str
    at: datetime | None


@dataclass(frozen=True)
class Release:
    status: str | None
    attempts: int
    result: Any
    released_at: datetime | None


@dataclass(frozen=True)
class Decision:
    id: str
    status: str
    action: str
    summary: str
    params: dict[str, Any]
    approved_params: dict[str, Any] | None
    policy: Policy
    risk: str
    required_approvals: int
    reviews: list[Review]
    behaviour_version: int | None
    created_at: datetime | None
    expires_at: datetime | None
    release: Release
    external_ref: str = ""
    status_reason: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Decision:
        policy = data.get("policy") or {}
        release = data.get("release") or {}
        return cls(
            id=str(data["id"]),
            status=data["status"],
            action=data.get("action", ""),
            summary=data.get("summary", ""),
            params=data.get("params") or {},
            approved_params=data.get("approved_params"),
            policy=Policy(
                outcome=policy.get("outcome", ""),
                rule=policy.get("rule", ""),
                explanation=policy.get("explanation", ""),
            ),
            risk=data.get("risk", ""),
            required_approvals=data.get("required_approvals", 0),
            reviews=[
                Review(
                    verdict=r.get("verdict", ""),
                    comment=r.get("comment", ""),
                    tags=list(r.get("tags") or []),
                    reviewer=r.get("reviewer", ""),
                    at=parse_time(r.get("at")),
                )
                for r in data.get("reviews") or []
            ],
            behaviour_version=data.get("behaviour_version"),
            created_at=parse_time(data.get("created_at")),
            expires_at=parse_time(data.get("expires_at")),
            release=Release(
                status=release.get("status"),
                attempts=release.get("attempts", 0),
                result=release.get("result"),
                released_at=parse_time(release.get("released_at")),
            ),
            external_ref=data.get("external_ref", ""),
            status_reason=data.get("status_reason", ""),
            raw=data,
        )

    @property
    def pending(self) -> bool:
        return self.status == PENDING

    @property
    def approved(self) -> bool:
        """Approved by policy or by reviewers (whether or not released yet)."""
        return self.status in APPROVED_STATUSES

    @property
    def released(self) -> bool:
        return self.status == "released"

    @property
    def effective_params(self) -> dict[str, Any]:
        """The params to act on: the reviewers' edit if any, else the submitted ones."""
        return self.approved_params if self.approved_params is not None else self.params

    @property
    def reason(self) -> str:
        """Why it ended as it did: the reviewer's words on a rejection, the policy's
        explanation on a denial, else the server's status reason."""
        return self.status_reason or self.policy.explanation

    def settled(self, *, until_released: bool = True) -> bool:
        """Whether waiting on this decision is over."""
        if self.pending:
            return False
        return not (until_released and self.status in RELEASE_PENDING)


@dataclass(frozen=True)
class Behaviour:
    version: int
    instructions: str
    settings: dict[str, Any]
    policy: list[dict[str, Any]]
    activated_at: datetime | None
    etag: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any], etag: str | None = None) -> Behaviour:
        return cls(
            version=data["version"],
            instructions=data.get("instructions", ""),
            settings=data.get("settings") or {},
            policy=data.get("policy") or [],
            activated_at=parse_time(data.get("activated_at")),
            etag=etag,
            raw=data,
        )


@dataclass(frozen=True)
class FeedbackItem:
    """One reviewer verdict on one of the agent's decisions. Keep `cursor` to resume."""

    cursor: str
    decision_id: str
    action: str
    verdict: str
    comment: str
    tags: list[str]
    reviewer: str
    params_before: dict[str, Any] | None
    params_after: dict[str, Any] | None
    decision_status: str
    at: datetime | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeedbackItem:
        return cls(
            cursor=data["cursor"],
            decision_id=str(data.get("decision_id", "")),
            action=data.get("action", ""),
            verdict=data.get("verdict", ""),
            comment=data.get("comment", ""),
            tags=list(data.get("tags") or []),
            reviewer=data.get("reviewer", ""),
            params_before=data.get("params_before"),
            params_after=data.get("params_after"),
            decision_status=data.get("decision_status", ""),
            at=parse_time(data.get("at")),
            raw=data,
        )
