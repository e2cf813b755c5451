"""Playwright fixtures: one Chromium per session, one recorded page per test.

Every page records its console messages, page errors, window dialogs and the
requests it makes. A test fails at teardown if the page reported a Content
Security Policy violation, raised an uncaught error, or opened a window dialog.
"""

import os
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import sync_playwright

# Playwright's sync API runs an event loop in the test thread; Django's ORM
# refuses to run under a loop unless told it is safe, which it is here.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "correct horse battery staple"
TIMEOUT_MS = 10_000

# Chromium's own console wording for a violation changes between versions; the
# page's securitypolicyviolation event reports each one in a fixed form as well.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(
    `Refused by Content Security Policy: ${event.effectiveDirective} blocked ${event.blockedURI}`
  );
}, true);
"""
CSP_MARKERS = ("Content Security Policy", "Refused to")


@dataclass
class Recorded:
    console: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    dialogs: list = field(default_factory=list)
    requests: list = field(default_factory=list)

    def csp_violations(self) -> list[str]:
        return [
            f"{kind}: {text}"
            for kind, text in self.console
            if any(marker in text for marker in CSP_MARKERS)
        ]

    def problems(self) -> list[str]:
        problems = [f"CSP violation: {text}" for text in self.csp_violations()]
        problems += [f"page error: {error}" for error in self.errors]
        problems += [f"window dialog ({kind}): {message}" for kind, message in self.dialogs]
        return problems


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def recorded() -> Recorded:
    return Recorded()


@pytest.fixture
def page(browser, live_server, recorded):
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(CSP_LISTENER)
    page = context.new_page()
    page.on("console", lambda message: recorded.console.append((message.type, message.text)))
    page.on("pageerror", lambda error: recorded.errors.append(str(error)))
    page.on("request", lambda request: recorded.requests.append(request))

    def on_dialog(dialog):
        recorded.dialogs.append((dialog.type, dialog.message))
        dialog.dismiss()

    page.on("dialog", on_dialog)
    yield page
    # Close first, so no request is in flight while the database is flushed.
    context.close()
    problems = recorded.problems()
    assert not problems, "The page reported problems:\n" + "\n".join(problems)


@pytest.fixture
def login(live_server):
    """Log in through the real login form, then land on `next`."""

    def login(page, username: str, *, password: str = PASSWORD, next: str = "/inbox/"):
        page.goto(f"/accounts/login/?next={next}")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{live_server.url}{next}")
        page.wait_for_load_state("load")
        return page

    return login


# axe-core rules at these impacts fail a test; "minor" and "moderate" are reported by
# axe as best practice and left to review.
AXE_FAILING_IMPACTS = {"serious", "critical"}


SETTLED = """() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')
  && document.getAnimations().every((animation) => animation.playState !== 'running')"""


def axe_violations(page, *, impacts=AXE_FAILING_IMPACTS) -> list[str]:
    """axe-core's violations on the page as it stands, at the given impacts.

    axe-core comes with the axe-playwright-python dev dependency (its bundled
    axe.min.js), so nothing is vendored or fetched at test time.
    """
    from axe_playwright_python.sync_playwright import Axe

    # Audit what a person sees once the page has settled: mid-swap, htmx dims the pane
    # (.htmx-swapping, opacity 0.6, and a 150 ms transition back), and axe would measure
    # the contrast of text that is still fading in.
    page.wait_for_function(SETTLED, timeout=5000)
    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in impacts
    ]


def horizontal_overflow(page) -> int:
    """How far the page scrolls sideways, in CSS pixels; 0 or less means it does not."""
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


# The outermost elements that stick out past the viewport's right edge: what to fix.
OVERFLOWING = """() => {
  const width = window.innerWidth;
  const out = [];
  for (const el of document.querySelectorAll("body *")) {
    if (el.getBoundingClientRect().right <= width + 0.5) continue;
    if (el.parentElement && el.parentElement.getBoundingClientRect().right > width + 0.5) continue;
    if (el.parentElement && el.parentElement.closest(".table-wrap, .scroll-x")) continue;
    const classes = typeof el.className === "string" ? el.className.trim() : "";
    const name = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
      + (classes ? "." + classes.split(/\\s+/).join(".") : "");
    out.push(`${name} (right edge ${Math.round(el.getBoundingClientRect().right)})`);
  }
  return out.slice(0, 5);
}"""


def overflowing_elements(page) -> list[str]:
    return page.evaluate(OVERFLOWING)
