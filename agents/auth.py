"""DRF authentication for agents: `Authorization: Bearer aispm_..._...`."""

import secrets
import threading
from datetime import timedelta

from django.db import connections
from django.utils import timezone
from rest_framework import authentication, exceptions, permissions

from aispm_site.db import numbered, prepared_cursor

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
# The rows' fingerprint: every column of the key, except the two that record its use
# (written at most once a minute, by any process), and every column of its agent.
_UNTRACKED = {"last_used_at", "last_used_ip"}


def _fingerprint_sql() -> str:
    columns = [
        *(f'k."{f.column}"' for f in AgentKey._meta.concrete_fields if f.name not in _UNTRACKED),
        *(f'a."{f.column}"' for f in Agent._meta.concrete_fields),
    ]
    return f"md5(ROW({', '.join(columns)})::text)"


_FROM = (
    f'FROM "{AgentKey._meta.db_table}" k JOIN "{Agent._meta.db_table}" a ON a."id" = k."agent_id"'
)
_KEY_SQL = numbered(
    f"SELECT {_columns(AgentKey, 'k')}, {_columns(Agent, 'a')}, {_fingerprint_sql()} "
    f'{_FROM} WHERE k."key_hash" = %s'
)
# For a statement that writes on a remembered key's authority: true only if the key and
# its agent are still what was remembered (NULL if the key is gone).
FRESH_SQL = f'SELECT {_fingerprint_sql()} = %s::text AS fresh {_FROM} WHERE k."id" = %s::bigint'


class _Remembered:
    """Key rows this process has read, by digest: the row, as the lookup returned it, and
    its fingerprint (_fingerprint_sql). At most LIMIT; the oldest go first."""

    LIMIT = 4096

    def __init__(self):
        self.rows: dict[str, tuple[list, str]] = {}
        self._lock = threading.Lock()  # for threaded servers (gunicorn gthread)

    def get(self, digest: str) -> tuple[list, str] | None:
        return self.rows.get(digest)

    def put(self, digest: str, row: list, fingerprint: str) -> None:
        with self._lock:
            self.rows.pop(digest, None)
            while len(self.rows) >= self.LIMIT:
                del self.rows[next(iter(self.rows))]
            self.rows[digest] = (row, fingerprint)

    def forget(self, digest: str) -> None:
        with self._lock:
            self.rows.pop(digest, None)


REMEMBERED = _Remembered()
_LAST_USED = {name: _KEY_FIELDS.index(name) for name in ("last_used_at", "last_used_ip")}


def _lookup(digest: str) -> tuple[list, str] | None:
    """(row, fingerprint) of the key with this digest and its agent, from the database."""
    connection = connections[AgentKey.objects.db]
    with prepared_cursor(connection) as cursor:
        cursor.execute(_KEY_SQL, [digest])
        row = cursor.fetchone()
    if row is None:
        return None
    row = list(row)
    fingerprint = row.pop()
    for index, field in _CONVERTED:
        row[index] = field.from_db_value(row[index], None, connection)
    return row, fingerprint


def _instances(row: list) -> AgentKey:
    alias = AgentKey.objects.db
    split = len(_KEY_FIELDS)
    key = AgentKey.from_db(alias, _KEY_FIELDS, row[:split])
    key.agent = Agent.from_db(alias, _AGENT_FIELDS, row[split:])
    return key


def _key_by_hash(digest: str, *, remember: bool = False) -> AgentKey | None:
    """The key and its agent in one query.

    This runs on every agent request. On PostgreSQL the driver returns the types the
    ORM starts from, and the fields' own converters finish the job, so a precompiled
    statement skips the ORM's query compilation, which profiling showed as the
    costliest part of authentication; PostgreSQL prepares it once per connection.

    With `remember`, a key this process has read before is answered from memory, with
    no query: the key is marked with its rows' fingerprint (remembered_fingerprint),
    and whatever is done on its authority must be confirmed against the database
    (FRESH_SQL in the statement that writes, or key_still_fresh) before it counts.
    Agents that anomaly rules watch are never remembered (their checks read and write
    state of their own).
    """
    connection = connections[AgentKey.objects.db]
    if connection.vendor != "postgresql":
        return AgentKey.objects.select_related("agent").filter(key_hash=digest).first()
    if remember:
        found = REMEMBERED.get(digest)
        if found is not None:
            key = _instances(found[0])
            key.remembered_fingerprint = found[1]
            return key
    found = _lookup(digest)
    if found is None:
        REMEMBERED.forget(digest)
        return None
    row, fingerprint = found
    key = _instances(row)
    if key.agent.anomaly_rules:
        REMEMBERED.forget(digest)
    else:
        REMEMBERED.put(digest, row, fingerprint)
    return key


def remembered_fingerprint(key: AgentKey) -> str | None:
    """The fingerprint a key answered from memory carries; None for one just read."""
    return getattr(key, "remembered_fingerprint", None)


def key_still_fresh(key: AgentKey) -> bool:
    """Whether a remembered key and its agent are unchanged in the database (one query;
    the memory then holds what the database holds). True for a key just read."""
    fingerprint = remembered_fingerprint(key)
    if fingerprint is None:
        return True
    found = _lookup(key.key_hash)
    if found is None or found[1] != fingerprint:
        REMEMBERED.forget(key.key_hash)
        return False
    return True


def _watch_address(agent: Agent, ip: str | None) -> None:
    from .anomaly_rules import with_defaults
    from .services import address_seen, new_ip_respond

    rules = [with_defaults(r) for r in agent.anomaly_rules if r.get("rule") == "new_ip"]
    if rules and address_seen(agent=agent, ip=ip):
        for rule in rules:
            new_ip_respond(agent=agent, ip=ip, rule=rule)


def agent_for_header(
    header: str, *, ip: str | None, remember: bool = False
) -> tuple[Agent, AgentKey]:
    """The agent and key that an Authorization header names, or AuthenticationFailed.

    A malformed key or one with a bad checksum is refused before any query; a
    well-formed one is looked up by its SHA-256 and compared in constant time. A key
    that authenticates records its use (at most once a minute) and, where an anomaly
    rule watches for it, the address it came from.

    `remember` lets a key this process has read before be answered from memory
    (_key_by_hash); only a caller that confirms what it does on the key's authority
    may ask for it. A remembered key that memory says is not usable is read afresh.
    """
    scheme, _, token = header.partition(" ")
    token = token.strip()
    # Auth schemes are case-insensitive (RFC 9110 §11.1): "bearer" is "Bearer".
    if scheme.lower() != "bearer" or not token:
        raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <agent key>'.")
    if not keys.is_well_formed(token):
        raise exceptions.AuthenticationFailed("The key is malformed or its checksum is wrong.")
    digest = keys.hash_key(token)
    key = _key_by_hash(digest, remember=remember)
    now = timezone.now()
    if key is not None and remembered_fingerprint(key) and not key.state_at(now).usable:
        key = _key_by_hash(digest)  # refuse only on what the database holds now
    if key is None or not secrets.compare_digest(key.key_hash, digest):
        raise exceptions.AuthenticationFailed("Unknown key.")
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
    found = REMEMBERED.get(key.key_hash)
    if found is not None:  # the fingerprint leaves these two out
        found[0][_LAST_USED["last_used_at"]] = now
        found[0][_LAST_USED["last_used_ip"]] = ip


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
