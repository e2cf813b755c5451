"""DRF authentication for agents: `Authorization: Bearer aispm_..._...`."""

import secrets
from datetime import timedelta

from django.db import connections
from django.utils import timezone
from rest_framework import authentication, exceptions, permissions

from aispm_site.db import prepared_cursor

from . import keys
from .models import Agent, AgentKey

LAST_USED_GRANULARITY = timedelta(minutes=1)


def _client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def _columns(model, alias: str) -> str:
    return ", ".join(f'{alias}."{field.column}"' for field in model._meta.concrete_fields)


_KEY_FIELDS = [field.attname for field in AgentKey._meta.concrete_fields]
_AGENT_FIELDS = [field.attname for field in Agent._meta.concrete_fields]
# Fields whose database value the ORM converts (JSON arrives as text), by column position.
_CONVERTED = [
    (index, field)
    for index, field in enumerate([*AgentKey._meta.concrete_fields, *Agent._meta.concrete_fields])
    if hasattr(field, "from_db_value")
]
_KEY_SQL = (
    f"SELECT {_columns(AgentKey, 'k')}, {_columns(Agent, 'a')} "
    f'FROM "{AgentKey._meta.db_table}" k JOIN "{Agent._meta.db_table}" a ON a."id" = k."agent_id" '
    'WHERE k."key_hash" = %s'
)


def _key_by_hash(digest: str) -> AgentKey | None:
    """The key and its agent in one query.

    This runs on every agent request. On PostgreSQL the driver returns the types the
    ORM starts from, and the fields' own converters finish the job, so a precompiled
    statement skips the ORM's query compilation, which profiling showed as the
    costliest part of authentication; PostgreSQL prepares it once per connection.
    """
    connection = connections[AgentKey.objects.db]
    if connection.vendor != "postgresql":
        return AgentKey.objects.select_related("agent").filter(key_hash=digest).first()
    with prepared_cursor(connection) as cursor:
        cursor.execute(_KEY_SQL, [digest])
        row = cursor.fetchone()
    if row is None:
        return None
    row = list(row)
    for index, field in _CONVERTED:
        row[index] = field.from_db_value(row[index], None, connection)
    split = len(_KEY_FIELDS)
    key = AgentKey.from_db(connection.alias, _KEY_FIELDS, row[:split])
    key.agent = Agent.from_db(connection.alias, _AGENT_FIELDS, row[split:])
    return key


def _watch_address(agent: Agent, ip: str | None) -> None:
    from .anomaly_rules import with_defaults
    from .services import address_seen, new_ip_respond

    rules = [with_defaults(r) for r in agent.anomaly_rules if r.get("rule") == "new_ip"]
    if rules and address_seen(agent=agent, ip=ip):
        for rule in rules:
            new_ip_respond(agent=agent, ip=ip, rule=rule)


def agent_for_header(header: str, *, ip: str | None) -> tuple[Agent, AgentKey]:
    """The agent and key that an Authorization header names, or AuthenticationFailed.

    A malformed key or one with a bad checksum is refused before any query; a
    well-formed one is looked up by its SHA-256 and compared in constant time. A key
    that authenticates records its use (at most once a minute) and, where an anomaly
    rule watches for it, the address it came from.
    """
    scheme, _, token = header.partition(" ")
    token = token.strip()
    # Auth schemes are case-insensitive (RFC 9110 §11.1): "bearer" is "Bearer".
    if scheme.lower() != "bearer" or not token:
        raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <agent key>'.")
    if not keys.is_well_formed(token):
        raise exceptions.AuthenticationFailed("The key is malformed or its checksum is wrong.")
    digest = keys.hash_key(token)
    key = _key_by_hash(digest)
    if key is None or not secrets.compare_digest(key.key_hash, digest):
        raise exceptions.AuthenticationFailed("Unknown key.")
    now = timezone.now()
    state = key.state_at(now)
    if state == AgentKey.State.REVOKED:
        raise exceptions.AuthenticationFailed("The key has been revoked.")
    if state == AgentKey.State.EXPIRED:
        raise exceptions.AuthenticationFailed("The key has expired.")
    _touch(key, now=now, ip=ip)
    if key.agent.anomaly_rules:
        _watch_address(key.agent, ip)
    return (key.agent, key)


def _touch(key: AgentKey, *, now, ip) -> None:
    # At most one write a minute per key, so authentication adds no write per request.
    if key.last_used_at is not None and now - key.last_used_at < LAST_USED_GRANULARITY:
        return
    AgentKey.objects.filter(pk=key.pk).update(last_used_at=now, last_used_ip=ip)
    key.last_used_at, key.last_used_ip = now, ip


class AgentKeyAuthentication(authentication.BaseAuthentication):
    """Identify the calling agent from its key (agent_for_header), and nothing else."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        return agent_for_header(header, ip=_client_ip(request))

    def authenticate_header(self, request):
        return f'{self.keyword} realm="aispm"'


class IsAgent(permissions.BasePermission):
    def has_permission(self, request, view):
        return isinstance(request.auth, AgentKey)
