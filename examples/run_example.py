"""`make example`: the whole loop in one command, offline.

Starts aispm (uvicorn on aispm_site.asgi, a fresh SQLite database in a temporary
directory), applies examples/governance.yaml, issues the agent's key, runs the
agent loop (examples/agent_loop.py) against /mcp/, and plays the reviewer in
Chromium (Playwright): the third proposal waits in the inbox until the reviewer
approves it there, and the agent sees it released.

Exit status 0 means the agent saw: released, denied, released after review.
"""

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "example reviewer password"
EXPECTED = [
    "released: Pay 120 to ACME Supplies",
    "denied: Never email personal addresses",
    "released: Pay 4800 to Globex",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_env(workdir: str) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "CELERY_", "DJANGO_", "AISPM_MCP_"))
    }
    # aispm's settings with the SQLite file moved into the temporary directory.
    Path(workdir, "example_settings.py").write_text(
        "from aispm_site.settings import *  # noqa: F403\n"
        f"DATABASES['default']['NAME'] = {str(Path(workdir, 'example.sqlite3'))!r}\n"
    )
    env.update(
        DEBUG="true",
        DJANGO_SETTINGS_MODULE="example_settings",
        PYTHONPATH=os.pathsep.join([workdir, str(ROOT)]),
        AISPM_MCP_REVIEW_WAIT_SECONDS="120",
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
        LOG_LEVEL="WARNING",
    )
    return env


def manage(env: dict, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def wait_until_up(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("aispm exited at start-up")
        try:
            urllib.request.urlopen(f"{url}/healthz/", timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("aispm did not start")


def review_in_browser(url: str) -> None:
    """Log in as the reviewer, wait for the held payment, and approve it."""
    with sync_playwright() as playwright:
        options = {"executable_path": CHROMIUM} if Path(CHROMIUM).exists() else {}
        browser = playwright.chromium.launch(headless=True, args=["--no-sandbox"], **options)
        page = browser.new_page(base_url=url)
        page.set_default_timeout(60_000)
        page.goto("/accounts/login/?next=/inbox/")
        page.get_by_label("Username").fill("reviewer")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{url}/inbox/")
        row = page.locator("#inbox .inbox-row", has_text="Pay 4800 to Globex")
        for _ in range(120):
            if row.count():
                break
            time.sleep(0.5)
            page.reload()
        row.first.click()
        detail = page.locator("#decision-detail")
        expect(detail.locator("#decision-title")).to_have_text("Pay 4800 to Globex")
        print("reviewer: approving 'Pay 4800 to Globex' in the inbox", flush=True)
        page.locator("#approve-button").click()
        expect(page.locator("#inbox .messages")).to_contain_text("Approved: Pay 4800 to Globex")
        browser.close()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="aispm-example-") as workdir:
        env = server_env(workdir)
        print("aispm: migrating a fresh database, applying examples/governance.yaml", flush=True)
        manage(env, "migrate", "--no-input")
        manage(env, "apply_governance", str(ROOT / "examples" / "governance.yaml"))
        key = manage(env, "issue_agent_key", "finance-agent").strip().splitlines()[-1]
        manage(
            env,
            "createsuperuser",
            "--no-input",
            "--username",
            "reviewer",
            "--email",
            "r@example.com",
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "aispm_site.asgi:application",
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
        )
        try:
            wait_until_up(url, server)
            print(f"aispm: up at {url}; MCP endpoint {url}/mcp/", flush=True)
            # The SDK's package is named `agents`, like aispm's app: keep the project
            # root off the agent's path.
            agent_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            agent = subprocess.Popen(
                [sys.executable, str(ROOT / "examples" / "agent_loop.py"), f"{url}/mcp/", key],
                cwd=workdir,
                env=agent_env,
                stdout=subprocess.PIPE,
                text=True,
            )
            lines: list[str] = []

            def relay():
                for line in agent.stdout:
                    lines.append(line)
                    print(f"agent | {line}", end="", flush=True)

            relay_thread = threading.Thread(target=relay)
            relay_thread.start()
            review_in_browser(url)
            agent.wait(timeout=180)
            relay_thread.join()
        finally:
            server.terminate()
            server.wait(timeout=15)
    seen = [line.strip()[3:] for line in lines if line.strip().startswith("<- ")]
    ok = (
        agent.returncode == 0
        and len(seen) == 3
        and all(text.startswith(expected) for text, expected in zip(seen, EXPECTED, strict=True))
    )
    print(
        "example: OK, the agent saw released, denied, and released after review"
        if ok
        else "example: FAILED"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
