"""A real OpenID provider for the single sign-on tests, and a scripted user at its login page.

The provider is panva/oidc-provider (OpenID certified), run with node from
tests/oidc_provider (`make test` installs it with `npm ci`). Nothing is mocked: aispm
discovers it, sends the user to its login page, exchanges the code with PKCE and
checks the ID token it signs.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from josepy import JWKRSA

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"
CLIENT_ID = "aispm"
CLIENT_SECRET = "aispm-test-client-secret-0123456789"
GROUP_MAP = {
    "aispm-reviewers": "Reviewers",
    "aispm-auditors": "Auditors",
    "aispm-agent-admins": "Agent admins",
}
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def signing_keys() -> dict:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = JWKRSA(key=key).to_partial_json()
    return {"keys": [{**jwk, "kid": "aispm-test", "alg": "RS256", "use": "sig"}]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OpenIDProvider:
    def __init__(self, directory: Path, *, jwks: dict, accounts: dict):
        self.config = directory / f"provider-{id(self)}.json"
        self.jwks = jwks
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.set_accounts(accounts)
        self.process = None

    def set_accounts(self, accounts: dict) -> None:
        document = {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "jwks": self.jwks,
            "accounts": accounts,
        }
        temporary = self.config.with_suffix(".tmp")
        temporary.write_text(json.dumps(document))
        temporary.replace(self.config)

    def start(self) -> "OpenIDProvider":
        if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
            message = "the test OpenID provider is not installed: run `make test` (npm ci)"
            pytest.fail(message) if IN_CI else pytest.skip(message)
        node = shutil.which("node")
        if node is None:
            pytest.fail("node is required") if IN_CI else pytest.skip("node is not installed")
        self.process = subprocess.Popen(
            [node, str(PROVIDER_DIR / "provider.mjs"), str(self.port), str(self.config)],
            cwd=PROVIDER_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                discovery = f"{self.issuer}/.well-known/openid-configuration"
                response = requests.get(discovery, timeout=1)
                if response.ok:
                    return self
            except requests.ConnectionError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"the OpenID provider exited: {self.process.stdout.read()}")
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("the OpenID provider did not start within 20 seconds")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def sign_in_at_provider(
    authorize_url: str, login: str, *, http: requests.Session | None = None
) -> str:
    """Follow the provider's pages as a user would; return the URL it sends back to aispm."""
    http = http or requests.Session()
    method, url, data = "GET", authorize_url, None
    for _ in range(12):
        response = http.request(method, url, data=data, allow_redirects=False, timeout=10)
        if response.is_redirect:
            target = urljoin(url, response.headers["Location"])
            if "/oidc/callback/" in target:
                return target
            method, url, data = "GET", target, None
            continue
        form = re.search(r'<form[^>]*action="([^"]+)"', response.text)
        if response.status_code != 200 or form is None:
            raise AssertionError(f"provider page {response.status_code}: {response.text}")
        if 'name="login"' in response.text:
            data = {"prompt": "login", "login": login, "password": "any"}
        else:
            data = {"prompt": "consent"}
        method, url = "POST", urljoin(url, form.group(1))
    raise AssertionError("the provider never sent the user back")


ACCOUNTS = {
    "rita": {
        "email": "rita@example.test",
        "name": "Rita Reviewer",
        "preferred_username": "rita",
        "groups": ["aispm-reviewers", "staff-everyone"],
    },
    "alan": {
        "email": "alan@example.test",
        "name": "Alan Admin",
        "groups": ["aispm-agent-admins", "aispm-auditors"],
    },
}


@pytest.fixture(scope="session")
def provider_keys():
    return signing_keys()


@pytest.fixture(scope="session")
def provider(tmp_path_factory, provider_keys):
    running = OpenIDProvider(
        tmp_path_factory.mktemp("oidc"), jwks=provider_keys, accounts=ACCOUNTS
    ).start()
    yield running
    running.stop()


@pytest.fixture
def sso(settings, provider):
    """aispm configured, as by the environment, for the running provider."""
    from aispm_site import oidc

    provider.set_accounts(ACCOUNTS)
    settings.OIDC_ISSUER = provider.issuer
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    settings.OIDC_GROUP_MAP = GROUP_MAP
    # As settings.py does for a configured issuer.
    csp = {**settings.SECURE_CSP}
    csp["form-action"] = [*csp["form-action"], provider.issuer]
    settings.SECURE_CSP = csp
    oidc.forget_discovery()
    yield provider
    oidc.forget_discovery()
