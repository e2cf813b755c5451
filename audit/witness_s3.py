"""The s3://bucket/prefix witness: one object per checkpoint in S3-compatible storage.

Each checkpoint becomes `<prefix>checkpoint-<last seq>.json`, written once:
- a GET before the PUT returns when the same bytes are already there (a retry) and
  refuses when different ones are;
- the PUT carries `If-None-Match: *`, so the server itself refuses to replace an
  object that appeared in between (a server without conditional writes answers
  NotImplemented, and the GET before it is then the only guard);
- Content-MD5 and x-amz-checksum-sha256 let the server refuse a corrupted body;
- when the bucket has Object Lock, the object is retained in COMPLIANCE mode until
  now + the retention period: nobody, the root account included, can delete or
  overwrite that version before then.

Reading lists every version of every checkpoint key when the credentials may, so a
checkpoint written again (a new version in a versioned bucket) or hidden behind a
delete marker is still read as first written, and a key whose versions differ fails.

Imports nothing from Django (audit.offline_verify reads a witness with it) and
imports boto3 only when used.
"""

import base64
import hashlib
import json
import re
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

MAX_URL_CHARS = 1024
READ_THREADS = 16
MAX_PREFIX_BYTES = 512
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_NAME = re.compile(r"checkpoint-[0-9]+\.json")
_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"}


class S3ConfigError(ValueError):
    """The s3:// URL or endpoint is not one this witness can use. The message never
    echoes the value."""


class S3WitnessError(RuntimeError):
    """The bucket could not be written or read, or holds something it must not."""


class S3Conflict(S3WitnessError):
    """The witness already holds a different checkpoint under that name."""


class S3Rewritten(S3WitnessError):
    """A checkpoint key holds versions that differ: it was written again."""


def text_problem(value: str, *, limit: int = MAX_URL_CHARS) -> str:
    """Why a URL is refused ('' if it is not): too long, or a control, format (bidi),
    unassigned or space character anywhere in it."""
    if len(value) > limit:
        return f"is {len(value)} characters long (at most {limit})"
    for char in value:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            return f"contains a control, format, space or unassigned character (U+{ord(char):04X})"
    return ""


def parse_url(url: str) -> tuple[str, str]:
    """(bucket, key prefix ending in '/' or empty) of an s3://bucket/prefix URL."""
    problem = text_problem(url)
    if problem:
        raise S3ConfigError(f"the s3 witness URL {problem}")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise S3ConfigError("the s3 witness URL is not a URL") from None
    if parts.scheme != "s3":
        raise S3ConfigError("the s3 witness URL must start with s3://")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise S3ConfigError("the s3 witness URL takes no ?query or #fragment")
    bucket = parts.netloc
    if "@" in bucket or ":" in bucket:
        raise S3ConfigError(
            "the s3 witness URL names a bucket only: credentials come from the AWS "
            "environment variables, the endpoint from AISPM_AUDIT_WITNESS_S3_ENDPOINT"
        )
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise S3ConfigError(
            "the s3 witness URL must name a bucket: 3 to 63 lowercase letters, digits, "
            "dots and hyphens, e.g. s3://aispm-witness/checkpoints/"
        )
    prefix = parts.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if len(prefix.encode()) > MAX_PREFIX_BYTES:
        raise S3ConfigError(f"the s3 witness prefix is longer than {MAX_PREFIX_BYTES} bytes")
    return bucket, prefix


def check_endpoint(endpoint: str) -> str:
    """An http(s)://host[:port] endpoint for S3-compatible storage (MinIO, Ceph...)."""
    problem = text_problem(endpoint)
    if problem:
        raise S3ConfigError(f"the S3 endpoint {problem}")
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError:
        raise S3ConfigError("the S3 endpoint is not a URL with a valid port") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise S3ConfigError("the S3 endpoint must be an http(s):// URL with a host")
    return endpoint


def client(endpoint: str = ""):
    """A boto3 S3 client: credentials and region from the standard AWS variables
    (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, a
    profile or an instance role), short timeouts, a few retries."""
    if endpoint:
        check_endpoint(endpoint)
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise S3WitnessError("an s3:// witness needs boto3 (pip install boto3)") from None
    config = Config(
        connect_timeout=5,
        read_timeout=15,
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=READ_THREADS,
        # Path-style addressing works with every S3-compatible server.
        s3={"addressing_style": "path"} if endpoint else None,
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint or None, config=config)


def _code(exc) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _status(exc) -> int:
    return getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0)


@contextmanager
def errors(where: str):
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise S3WitnessError(f"s3 witness {where} failed: {exc}") from exc


def _get(s3, bucket: str, key: str, version: str | None = None) -> bytes | None:
    from botocore.exceptions import ClientError

    extra = {"VersionId": version} if version else {}
    try:
        return s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
    except ClientError as exc:
        if _code(exc) in {"NoSuchKey", "404", "NotFound"}:
            return None
        raise


def object_lock_enabled(s3, bucket: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        config = s3.get_object_lock_configuration(Bucket=bucket)
    except ClientError as exc:
        if _code(exc) == "ObjectLockConfigurationNotFoundError":
            return False
        raise
    return config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"


def publish(
    url: str, name: str, data: bytes, *, endpoint: str = "", retention_days: int, s3=None
) -> str:
    """Write `data` as `name` under the URL's prefix once; return the key."""
    from botocore.exceptions import ClientError

    bucket, prefix = parse_url(url)
    key = prefix + name
    where = f"s3://{bucket}/{key}"
    s3 = s3 or client(endpoint)
    with errors(where):
        held = _get(s3, bucket, key)
        if held is not None:
            if held == data:
                return key  # published before: a retry
            raise S3Conflict(f"{where} already holds a different checkpoint")
        put = {
            "Bucket": bucket,
            "Key": key,
            "Body": data,
            "ContentType": "application/json",
            "ContentMD5": base64.b64encode(hashlib.md5(data).digest()).decode(),
            "ChecksumSHA256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
            "IfNoneMatch": "*",
        }
        if object_lock_enabled(s3, bucket):
            put["ObjectLockMode"] = "COMPLIANCE"
            put["ObjectLockRetainUntilDate"] = datetime.now(UTC) + timedelta(days=retention_days)
        try:
            s3.put_object(**put)
        except ClientError as exc:
            if _status(exc) == 412 or _code(exc) in {
                "PreconditionFailed",
                "ConditionalRequestConflict",
            }:
                held = _get(s3, bucket, key)
                if held == data:
                    return key  # a concurrent retry wrote the same bytes first
                if held is None:
                    raise S3WitnessError(
                        f"s3 witness {where}: another write of it is in progress; the next "
                        "checkpoint run tries again"
                    ) from None
                raise S3Conflict(f"{where} already holds a different checkpoint") from None
            if _code(exc) != "NotImplemented":
                raise
            del put["IfNoneMatch"]  # no conditional writes here: the GET above guarded
            s3.put_object(**put)
    return key


def exists(url: str, name: str, *, endpoint: str = "", s3=None) -> bool:
    """Whether the witness holds an object called `name` (one HEAD request)."""
    from botocore.exceptions import ClientError

    bucket, prefix = parse_url(url)
    s3 = s3 or client(endpoint)
    with errors(f"s3://{bucket}/{prefix}{name}"):
        try:
            s3.head_object(Bucket=bucket, Key=prefix + name)
        except ClientError as exc:
            if _code(exc) in {"NoSuchKey", "404", "NotFound"}:
                return False
            raise
    return True


def _checkpoint_keys(s3, bucket: str, prefix: str) -> dict[str, list[str | None]]:
    """Every checkpoint key under the prefix with its version ids, oldest first; [None]
    (the current object only) when the credentials may not list versions."""
    from botocore.exceptions import ClientError

    keys: dict[str, list[str | None]] = {}
    listing = {"Bucket": bucket, "Prefix": prefix + "checkpoint-"}
    try:
        for page in s3.get_paginator("list_object_versions").paginate(**listing):
            for version in page.get("Versions", []):
                keys.setdefault(version["Key"], []).append(version["VersionId"])
    except ClientError as exc:
        if _code(exc) not in {"AccessDenied", "NotImplemented", "MethodNotAllowed"}:
            raise
        keys = {}
        for page in s3.get_paginator("list_objects_v2").paginate(**listing):
            for item in page.get("Contents", []):
                keys[item["Key"]] = [None]
        return keys
    # Each key's versions come newest first.
    return {key: list(reversed(ids)) for key, ids in keys.items()}


def read(url: str, *, endpoint: str = "", s3=None) -> list[dict]:
    """The checkpoints the witness holds, each as first written, in seq order. The
    objects are fetched READ_THREADS at a time (a boto3 client is thread-safe)."""
    bucket, prefix = parse_url(url)
    s3 = s3 or client(endpoint)
    records = []

    def fetch(item):
        key, versions = item
        bodies = (_get(s3, bucket, key, version) for version in versions)
        return key, [body for body in bodies if body is not None]

    with errors(f"s3://{bucket}/{prefix}"):
        keys = [
            item
            for item in sorted(_checkpoint_keys(s3, bucket, prefix).items())
            if _NAME.fullmatch(item[0][len(prefix) :])
        ]
        with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
            for key, bodies in pool.map(fetch, keys):
                if bodies:
                    records.append(_record(f"s3://{bucket}/{key}", bodies))
    return sorted(records, key=lambda record: record["last_seq"])


def _record(where: str, bodies: list[bytes]) -> dict:
    if any(body != bodies[0] for body in bodies[1:]):
        raise S3Rewritten(
            f"{where} holds {len(bodies)} different versions: a checkpoint was written again"
        )
    try:
        record = json.loads(bodies[0])
    except ValueError:
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("last_seq"), int):
        raise S3WitnessError(f"{where} is not a checkpoint")
    return record
