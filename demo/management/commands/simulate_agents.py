"""Drive the demo agents through the real agent API so the inbox fills like production."""

import math
import random
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from django.core.management.base import BaseCommand, CommandError

from agents.models import Agent
from agents.services import agent_key_issue
from demo import simulation
from demo.simulation import APPROVED, DENIED, NO_RESPONSE, PENDING, Outcome, Stats

MAX_RATE = 500.0
MAX_DURATION = 86400.0
PROGRESS_EVERY = 5.0
HTTP_TIMEOUT = 10.0


class Command(BaseCommand):
    help = (
        "Send realistic requests as the demo agents (sdr-agent, support-agent, finance-agent) "
        "to a running aispm server through the agent API, at a steady rate, and summarise "
        "what came back. Issues a fresh one-day key per agent, labelled 'simulator'."
    )

    def add_arguments(self, parser):
        parser.add_argument("--rate", type=float, default=2.0, help="requests per second")
        parser.add_argument("--duration", type=float, default=30.0, help="seconds to run")
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server's base URL")
        parser.add_argument(
            "--agents",
            default="",
            help="comma-separated agent slugs; default: every demo agent in the database",
        )
        parser.add_argument("--seed", type=int, default=None, help="random seed for the mix")
        parser.add_argument(
            "--max-requests", type=int, default=None, help="stop after this many requests"
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=None,
            help="requests in flight at once; default grows with --rate",
        )

    def handle(self, *args, rate, duration, url, agents, seed, max_requests, concurrency, **opts):
        if not math.isfinite(rate) or not 0 < rate <= MAX_RATE:
            raise CommandError(f"--rate must be above 0 and at most {MAX_RATE:g} requests/second.")
        if not math.isfinite(duration) or not 0 < duration <= MAX_DURATION:
            raise CommandError(f"--duration must be above 0 and at most {MAX_DURATION:g} seconds.")
        if max_requests is not None and max_requests < 1:
            raise CommandError("--max-requests must be at least 1.")
        if concurrency is not None and not 1 <= concurrency <= 256:
            raise CommandError("--concurrency must be from 1 to 256.")
        base_url = url.rstrip("/")
        self._check_server(base_url)
        slugs = self._agents(agents)
        if seed is None:
            seed = random.SystemRandom().randrange(1_000_000)
        keys = {}
        for agent in Agent.objects.filter(slug__in=slugs):
            issued = agent_key_issue(agent=agent, expires_in_days=1, label="simulator")
            keys[agent.slug] = issued.secret
        self._check_keys(base_url, keys)
        workers = concurrency or max(2, min(64, math.ceil(rate / 4)))
        self.stdout.write(
            f"Simulating {', '.join(slugs)} against {base_url}: {rate:g} requests/s for "
            f"{duration:g} s"
            + (f" (at most {max_requests} requests)" if max_requests else "")
            + f", seed {seed}."
        )
        stats, elapsed, note = self._run(
            base_url=base_url,
            keys=keys,
            slugs=slugs,
            rng=random.Random(seed),
            rate=rate,
            duration=duration,
            max_requests=max_requests,
            workers=workers,
        )
        self._summary(stats, elapsed=elapsed, rate=rate, seed=seed, note=note)

    def _check_server(self, base_url: str) -> None:
        probe = f"{base_url}/api/v1/behaviour/"
        try:
            status, _, headers = simulation.http_call("GET", probe, timeout=HTTP_TIMEOUT)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CommandError(
                f"Cannot reach the aispm server at {base_url} ({reason}). Is it running? "
                "Start it with `python manage.py runserver` or pass --url."
            ) from None
        if status == 401:
            return
        if 300 <= status < 400:
            location = {k.lower(): v for k, v in headers.items()}.get("location", "?")
            raise CommandError(
                f"GET {probe} redirected to {location}. Pass the server's base URL as --url "
                "(the https:// one if the server redirects to HTTPS)."
            )
        raise CommandError(
            f"{base_url} does not look like an aispm server: GET /api/v1/behaviour/ without a "
            f"key gave HTTP {status}, not 401 (wrong URL, or the host not in ALLOWED_HOSTS?)."
        )

    def _agents(self, option: str) -> list[str]:
        known = simulation.DEMO_AGENTS
        wanted = [slug.strip() for slug in option.split(",") if slug.strip()]
        for slug in wanted:
            if slug not in known:
                raise CommandError(
                    f"There is no simulated traffic for {slug!r}; choose from {', '.join(known)}."
                )
        present = {
            agent.slug: agent for agent in Agent.objects.filter(slug__in=wanted or list(known))
        }
        missing = [slug for slug in wanted if slug not in present]
        if missing or not present:
            raise CommandError(
                f"{'Agent ' + ', '.join(missing) + ' does' if missing else 'No demo agent'} "
                "not exist in this database. Load the demo config first: "
                "`python manage.py apply_governance demo/governance.yaml`."
            )
        slugs = []
        for slug in wanted or known:
            agent = present.get(slug)
            if agent is None:
                continue
            if not agent.is_active:
                self.stdout.write(self.style.WARNING(f"Skipping {slug}: it is suspended."))
                continue
            slugs.append(slug)
        if not slugs:
            raise CommandError("Every selected agent is suspended; nothing to simulate.")
        return slugs

    def _check_keys(self, base_url: str, keys: dict[str, str]) -> None:
        for slug, key in keys.items():
            try:
                status, _, _ = simulation.http_call(
                    "GET", f"{base_url}/api/v1/behaviour/", key=key, timeout=HTTP_TIMEOUT
                )
            except (OSError, ValueError) as exc:
                raise CommandError(
                    f"Lost the aispm server at {base_url} ({getattr(exc, 'reason', exc)})."
                ) from None
            if status == 401:
                raise CommandError(
                    f"The server at {base_url} refused the key just issued for {slug}. "
                    "Does it use the same database as this command (DATABASE_URL)?"
                )

    def _run(self, *, base_url, keys, slugs, rng, rate, duration, max_requests, workers):
        stats = Stats(agents=slugs)
        deck = simulation.Deck(slugs, rng)
        interval = 1.0 / rate
        blocked: dict[str, float] = {}  # agent -> monotonic time it may send again
        in_flight: set[Future] = set()
        start = time.monotonic()
        end = start + duration
        next_at = start
        next_progress = start + PROGRESS_EVERY
        sent = 0
        note = ""
        # Unique per run, unlike the seeded mix, so a repeated seed still creates decisions.
        run_tag = uuid.uuid4().hex[:10]

        def collect(done) -> None:
            for future in done:
                in_flight.discard(future)
                self._handle(future.result(), stats, blocked)

        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="simulate")
        try:
            while True:
                now = time.monotonic()
                collect([future for future in in_flight if future.done()])
                if now >= next_progress:
                    self._progress(stats, now - start)
                    next_progress += PROGRESS_EVERY
                if now >= end:
                    break
                if max_requests is not None and sent >= max_requests:
                    break
                if now < next_at:
                    time.sleep(min(next_at - now, 0.05))
                    continue
                if len(in_flight) >= workers:
                    wait(in_flight, timeout=0.05, return_when=FIRST_COMPLETED)
                    continue
                available = {slug for slug in slugs if blocked.get(slug, 0.0) <= now}
                if not available:
                    resume = min(blocked.values())
                    if resume >= end:
                        note = "Stopped early: every agent is paused past the end of the run."
                        break
                    time.sleep(min(resume - now, 0.25))
                    continue
                request = deck.deal(available)
                request.idempotency_key = f"sim-{run_tag}-{sent:06d}"
                in_flight.add(
                    pool.submit(
                        simulation.submit, base_url, keys[request.agent], request, HTTP_TIMEOUT
                    )
                )
                stats.record_sent(request.agent)
                sent += 1
                # Keep to the schedule, but never burst to make up for a long stall.
                next_at = max(next_at + interval, now - interval)
        except KeyboardInterrupt:
            note = "Interrupted; waiting for requests in flight."
        finally:
            collect(wait(in_flight).done)
            pool.shutdown()
        return stats, time.monotonic() - start, note

    def _handle(self, outcome: Outcome, stats: Stats, blocked: dict[str, float]) -> None:
        stats.record(outcome)
        agent = outcome.request.agent
        failed = outcome.http_status is None or outcome.http_status >= 500
        if failed and stats.total(stats.errors) == 1:
            problem = (
                outcome.detail if outcome.http_status is None else f"HTTP {outcome.http_status}"
            )
            self.stdout.write(
                self.style.WARNING(f"First error: {problem}; further errors are only counted.")
            )
        elif outcome.http_status == 429:
            until = time.monotonic() + outcome.retry_after
            if blocked.get(agent, 0.0) < until:
                self.stdout.write(
                    self.style.WARNING(
                        f"{agent} is rate-limited ({outcome.request.action}); pausing it for "
                        f"{outcome.retry_after:g} s as Retry-After asks."
                    )
                )
                blocked[agent] = until
        elif (
            outcome.http_status == 401 or outcome.error_code == "agent_suspended"
        ) and blocked.get(agent) != math.inf:
            self.stdout.write(
                self.style.WARNING(
                    f"{agent} was refused ({outcome.error_code or outcome.http_status}); "
                    "no more requests for it."
                )
            )
            blocked[agent] = math.inf

    def _progress(self, stats: Stats, elapsed: float) -> None:
        by_http = " ".join(
            f"{code}:{stats.total(counts)}" for code, counts in sorted(stats.by_http.items())
        )
        decisions = stats.by_decision
        self.stdout.write(
            f"{elapsed:6.1f}s  sent {stats.total(stats.sent):>5}  [{by_http or '-'}]  "
            f"pending {stats.total(decisions.get(PENDING, {}))}  "
            f"approved {stats.total(decisions.get(APPROVED, {}))}  "
            f"denied {stats.total(decisions.get(DENIED, {}))}  "
            f"out-of-scope {stats.total(stats.out_of_scope)}  "
            f"rate-limited {stats.total(stats.rate_limited)}  "
            f"errors {stats.total(stats.errors)}"
        )

    def _summary(self, stats: Stats, *, elapsed: float, rate: float, seed: int, note: str):
        if note:
            self.stdout.write(self.style.WARNING(note))
        sent = stats.total(stats.sent)
        self.stdout.write("")
        self.stdout.write(
            f"Summary: {sent} requests in {elapsed:.1f} s "
            f"({sent / elapsed if elapsed else 0:.1f}/s, target {rate:g}/s), seed {seed}"
        )
        columns = ["total", *stats.agents]
        rows = [("requests sent", stats.sent)]
        rows += [
            ("no response" if code == NO_RESPONSE else f"HTTP {code}", counts)
            for code, counts in sorted(stats.by_http.items())
        ]
        statuses = [PENDING, APPROVED, DENIED]
        statuses += sorted(set(stats.by_decision) - set(statuses))
        rows += [(f"decision {status}", stats.by_decision.get(status, {})) for status in statuses]
        rows += [
            ("out of scope (403)", stats.out_of_scope),
            ("rate limited (429)", stats.rate_limited),
            ("errors", stats.errors),
        ]
        widths = [max(len(c), 6) for c in columns]
        self.stdout.write(
            f"  {'':<22}" + "".join(f"{c:>{w + 2}}" for c, w in zip(columns, widths, strict=True))
        )
        for label, counts in rows:
            values = [stats.total(counts), *(counts.get(agent, 0) for agent in stats.agents)]
            self.stdout.write(
                f"  {label:<22}"
                + "".join(f"{v:>{w + 2}}" for v, w in zip(values, widths, strict=True))
            )
        p50, p95 = stats.percentile(0.5), stats.percentile(0.95)
        latency = f"{p50 * 1000:.0f} ms / {p95 * 1000:.0f} ms" if p50 is not None else "-"
        self.stdout.write(f"  {'latency p50 / p95':<22}{latency:>{widths[0] + 2}}")
        unexpected = stats.unexpected
        self.stdout.write(f"  {'unexpected outcomes':<22}{len(unexpected):>{widths[0] + 2}}")
        for outcome in unexpected[:10]:
            request = outcome.request
            self.stdout.write(
                f"    {request.agent} {request.kind} ({request.action}): expected "
                f"{request.expect}, got {outcome.result} {outcome.detail}".rstrip()
            )
