"""A real Celery worker (and beat) on Redis for the release integration tests.

The worker is another process: tests commit their data (transactional_db) and the
worker is pointed at pytest-django's test database. The broker is a dedicated Redis
database, flushed before and after each test, so messages left behind by other
tests can never reach these workers. Every wait here is bounded.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import kombu.pools
import pytest
import redis
from celery.utils.nodenames import host_format
from django.conf import settings as django_settings
from django.db import connection

from aispm_site.celery import app as celery_app
from tests.receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
REDIS_DB = int(os.environ.get("AISPM_ITEST_REDIS_DB", "7"))
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

# What every worker runs with; a test may override any of these per process.
LEASE_SECONDS = 6
MAX_ATTEMPTS = 3
RELEASE_ENV = {
    "AISPM_ALLOW_PRIVATE_TARGETS": "true",
    "AISPM_RELEASE_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    "AISPM_RELEASE_BACKOFF_SECONDS": "1",
    "AISPM_RELEASE_LEASE_SECONDS": str(LEASE_SECONDS),
    "AISPM_RELEASE_SWEEP_AFTER_SECONDS": "1",
}


def wait_for(predicate, *, timeout: float, what: str, interval: float = 0.05, details=None):
    """Poll `predicate` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{details()}" if details else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_url(base: str, *, port: int | None = None, db: int = 0) -> str:
    parts = urlsplit(base)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"{parts.hostname}:{port or parts.port or 6379}"
    netloc = f"{netloc[0]}@{host}" if len(netloc) == 2 else host
    return urlunsplit((parts.scheme, netloc, f"/{db}", "", ""))


class Process:
    """A child process in its own session, so it can be killed with all its children."""

    def __init__(self, name: str, args: list[str], *, env: dict, log_path: Path):
        self.name = name
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                args,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self, chars: int = 3000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return f"--- {self.name} log (last {chars} chars) ---\n{text[-chars:]}"

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL the process and its children at once, as a crash or OOM would."""
        self._signal_group(signal.SIGKILL)
        self.popen.wait(timeout=STOP_TIMEOUT)

    def terminate(self) -> None:
        if self.alive:
            self._signal_group(signal.SIGTERM)

    def stop(self, *, deadline: float | None = None) -> None:
        """Terminate, wait until `deadline` (monotonic), then kill whatever is left."""
        self.terminate()
        deadline = deadline or time.monotonic() + STOP_TIMEOUT
        try:
            self.popen.wait(timeout=max(deadline - time.monotonic(), 0.1))
            return
        except subprocess.TimeoutExpired:
            pass
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=STOP_TIMEOUT)


class Celery:
    """Starts workers and beat against the test database; stops them all at teardown."""

    def __init__(self, *, tmp_path: Path, broker: str):
        self.tmp_path = tmp_path
        self.broker = broker
        self.processes: list[Process] = []

    def _env(self, broker: str, extra: dict) -> dict:
        db = connection.settings_dict
        auth = quote(db["USER"] or "", safe="")
        if db.get("PASSWORD"):
            auth += ":" + quote(db["PASSWORD"], safe="")
        host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "AISPM_RELEASE_"))
        }
        env.update(
            DJANGO_SETTINGS_MODULE="aispm_site.test_settings",
            # pytest-django's test database, where this test's committed rows are.
            DATABASE_URL=f"postgres://{auth}@{host}/{db['NAME']}",
            CELERY_BROKER_URL=broker,
            # Same keys as this process, so connector secrets it encrypted decrypt there.
            SECRET_KEY=django_settings.SECRET_KEY,
            AISPM_ENCRYPTION_KEY=django_settings.AISPM_ENCRYPTION_KEY,
            LOG_LEVEL="WARNING",
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED="1",
            **RELEASE_ENV,
        )
        env.update(extra)
        return env

    def _start(self, name: str, args: list[str], env: dict) -> Process:
        log_path = self.tmp_path / f"{name}-{len(self.processes)}.log"
        process = Process(name, args, env=env, log_path=log_path)
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(process.log() for process in self.processes)

    def worker(
        self,
        *,
        broker: str | None = None,
        concurrency: int = 1,
        pool: str = "prefork",
        queues: str = "",
        **env,
    ) -> Process:
        """Start a worker (prefork unless told; on the default queue unless `queues`)
        and return once it answers a ping."""
        broker = broker or self.broker
        nodename = f"itest-{uuid.uuid4().hex[:8]}@%h"
        process = self._start(
            "worker",
            [
                *(sys.executable, "-m", "celery", "-A", "aispm_site", "worker"),
                *("-l", "warning", "--pool", pool, "--concurrency", str(concurrency)),
                *("-n", nodename, "--without-mingle", "--without-gossip", "--without-heartbeat"),
                *(("-Q", queues) if queues else ()),
            ],
            self._env(broker, env),
        )
        destination = [host_format(nodename)]

        def answers() -> bool:
            if not process.alive:
                raise AssertionError(f"the worker exited at start-up\n{process.log()}")
            with celery_app.connection_for_write(broker) as conn:
                return bool(
                    celery_app.control.ping(destination=destination, timeout=0.3, connection=conn)
                )

        wait_for(
            answers, timeout=START_TIMEOUT, what="the worker to answer a ping", details=process.log
        )
        return process

    def beat(self, *, broker: str | None = None, **env) -> Process:
        """Start `celery beat` running the release sweeper every second."""
        process = self._start(
            "beat",
            [
                *(sys.executable, "-m", "celery", "-A", "aispm_site", "beat", "-l", "info"),
                *("-s", str(self.tmp_path / "beat-schedule"), "--max-interval", "1"),
            ],
            self._env(
                broker or self.broker,
                {"DJANGO_SETTINGS_MODULE": "tests.integration.beat_settings", **env},
            ),
        )
        wait_for(
            lambda: not process.alive or "beat: Starting" in process.log_path.read_text(),
            timeout=START_TIMEOUT,
            what="beat to start",
            details=process.log,
        )
        assert process.alive, process.log()
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in self.processes:
            process.stop(deadline=deadline)


def _reset_producer_pools() -> None:
    """Drop the app's cached broker connections, so the next publish uses the new URL."""
    kombu.pools.reset()  # closes the cached connections and forgets their pools
    celery_app._pool = None
    with contextlib.suppress(KeyError, AttributeError):
        celery_app.__dict__["amqp"]._producer_pool = None


class BrokerSwitch:
    """Points this process's publishing (on-commit enqueues, pings) at one broker."""

    def __init__(self, monkeypatch, settings):
        self.monkeypatch = monkeypatch
        self.settings = settings
        self.saved = {key: celery_app.conf.get(key) for key in ("broker_url", "task_always_eager")}

    def point(self, url: str) -> None:
        # Celery reads CELERY_BROKER_URL from the environment before its own config.
        self.monkeypatch.setenv("CELERY_BROKER_URL", url)
        for name in ("CELERY_BROKER_READ_URL", "CELERY_BROKER_WRITE_URL"):
            self.monkeypatch.delenv(name, raising=False)
        self.settings.CELERY_BROKER_URL = url
        self.settings.CELERY_TASK_ALWAYS_EAGER = False
        celery_app.conf.update(broker_url=url, task_always_eager=False)
        _reset_producer_pools()

    def restore(self) -> None:
        celery_app.conf.update(self.saved)
        _reset_producer_pools()


@pytest.fixture
def broker_switch(monkeypatch, settings):
    switch = BrokerSwitch(monkeypatch, settings)
    yield switch
    switch.restore()


@pytest.fixture
def broker(broker_switch) -> str:
    """A dedicated, empty Redis database on the suite's Redis, used by this test only."""
    url = redis_url(os.environ["CELERY_BROKER_URL"], db=REDIS_DB)
    client = redis.Redis.from_url(url, socket_timeout=5)
    client.flushdb()
    broker_switch.point(url)
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def celery(transactional_db, broker, tmp_path):
    cluster = Celery(tmp_path=tmp_path, broker=broker)
    yield cluster
    cluster.stop_all()


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


class RedisServer:
    """A redis-server of our own, so a test can stop it without touching the suite's."""

    def __init__(self, *, tmp_path: Path):
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = free_port()
        self.tmp_path = tmp_path
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = Process(
            "redis-server",
            [
                *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--daemonize", "no"),
                *("--dir", str(self.tmp_path)),
            ],
            env=dict(os.environ),
            log_path=self.tmp_path / "redis-server.log",
        )
        wait_for(self._pong, timeout=10, what="redis-server to answer", details=self.process.log)

    def _pong(self) -> bool:
        if not self.process.alive:
            raise AssertionError(f"redis-server exited\n{self.process.log()}")
        try:
            with redis.Redis(port=self.port, socket_timeout=0.5) as client:
                return client.ping()
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


@pytest.fixture
def private_redis(tmp_path):
    server = RedisServer(tmp_path=tmp_path)
    if not os.path.exists(server.binary):
        message = "needs redis-server on PATH for the broker outage test"
        if IN_CI:
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(message)
    server.start()
    yield server
    server.stop()
