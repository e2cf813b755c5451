"""The published contract: /api/schema/ (OpenAPI 3) and the Swagger UI at /api/docs/."""

import os
import shutil
from html.parser import HTMLParser

import pytest
import yaml
from django.test import Client
from drf_spectacular.validation import validate_schema

SCHEMA_URL = "/api/schema/"
DOCS_URL = "/api/docs/"
ERROR_REF = "#/components/schemas/ErrorOut"
DECISION_REF = "#/components/schemas/DecisionOut"

# Every operation of the agent API, with the error statuses it documents.
OPERATIONS = {
    ("/api/v1/decisions/", "post"): {400, 401, 403, 409, 413, 429},
    ("/api/v1/decisions/", "get"): {400, 401},
    ("/api/v1/decisions/{decision_id}/", "get"): {401, 404},
    ("/api/v1/decisions/{decision_id}/cancel/", "post"): {401, 404, 409},
    ("/api/v1/behaviour/", "get"): {401, 404},
    ("/api/v1/feedback/", "get"): {400, 401},
}
CDN_MARKERS = ("cdn.", "jsdelivr", "unpkg", "cdnjs", "googleapis")


@pytest.fixture
def openapi(client):
    response = client.get(SCHEMA_URL, HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def static_client(settings):
    """A client whose WhiteNoise serves app static files as collectstatic would publish them."""
    settings.WHITENOISE_USE_FINDERS = True
    return Client()


def _operation(openapi, path, method):
    return openapi["paths"][path][method]


def _resolve(openapi, ref: str) -> dict:
    assert ref.startswith("#/"), ref
    node = openapi
    for part in ref[2:].split("/"):
        node = node[part]
    return node


class _Assets(HTMLParser):
    def __init__(self):
        super().__init__()
        self.scripts: list[dict] = []
        self.links: list[dict] = []
        self.styles = 0
        self.style_attributes = 0

    def handle_starttag(self, tag, attrs):
        self.style_attributes += any(name == "style" for name, _ in attrs)
        if tag == "script":
            self.scripts.append(dict(attrs))
        elif tag == "link":
            self.links.append(dict(attrs))
        elif tag == "style":
            self.styles += 1


def _csp(response) -> dict[str, list[str]]:
    header = response.headers["Content-Security-Policy"]
    directives = {}
    for directive in header.split(";"):
        name, *values = directive.split()
        directives[name] = values
    return directives


def test_the_schema_is_a_valid_openapi_3_document(client, openapi):
    assert openapi["openapi"].startswith("3.")
    validate_schema(openapi)
    # The default rendering (YAML, for humans and codegen) is the same document.
    response = client.get(SCHEMA_URL)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert yaml.safe_load(response.content) == openapi


def test_every_ref_in_the_schema_resolves(openapi):
    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                _resolve(openapi, node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(openapi)


def test_the_schema_describes_every_agent_endpoint_and_nothing_else(openapi):
    documented = {
        (path, method)
        for path, item in openapi["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert documented == set(OPERATIONS)
    operation_ids = [
        _operation(openapi, path, method)["operationId"] for path, method in OPERATIONS
    ]
    assert len(set(operation_ids)) == len(operation_ids)


@pytest.mark.parametrize(("path", "method"), list(OPERATIONS))
def test_each_operation_documents_its_errors_with_the_envelope(openapi, path, method):
    responses = _operation(openapi, path, method)["responses"]
    errors = {int(code) for code in responses if code.startswith(("4", "5"))}
    assert errors == OPERATIONS[(path, method)]
    for code in errors:
        response = responses[str(code)]
        assert response["description"], (path, method, code)
        assert list(response["content"]) == ["application/json"], (path, method, code)
        assert response["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}


def test_the_error_envelope_is_code_message_and_optional_details(openapi):
    envelope = _resolve(openapi, ERROR_REF)
    assert envelope["required"] == ["error"]
    body = _resolve(openapi, envelope["properties"]["error"]["$ref"])
    assert sorted(body["required"]) == ["code", "message"]
    assert body["properties"]["code"]["type"] == "string"
    assert body["properties"]["message"]["type"] == "string"
    details = body["properties"]["details"]
    assert details["type"] == "object"
    assert details["additionalProperties"] == {"type": "array", "items": {"type": "string"}}


def test_every_operation_requires_the_bearer_agent_key(openapi):
    schemes = openapi["components"]["securitySchemes"]
    assert schemes == {
        "agentKey": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": schemes["agentKey"]["bearerFormat"],
            "description": schemes["agentKey"]["description"],
        }
    }
    assert schemes["agentKey"]["bearerFormat"].startswith("aispm_")
    for path, method in OPERATIONS:
        # No `{}` alternative: the key is required, never optional.
        assert _operation(openapi, path, method)["security"] == [{"agentKey": []}], path


def test_decision_submission_requires_action_params_and_reasoning(openapi):
    operation = _operation(openapi, "/api/v1/decisions/", "post")
    body = operation["requestBody"]
    assert body["required"] is True
    assert list(body["content"]) == ["application/json"]
    submission = _resolve(openapi, body["content"]["application/json"]["schema"]["$ref"])
    assert sorted(submission["required"]) == ["action", "params", "reasoning"]
    assert set(submission["properties"]) == {
        "action",
        "params",
        "reasoning",
        "evidence",
        "confidence",
        "idempotency_key",
        "external_ref",
    }
    assert submission["properties"]["idempotency_key"]["maxLength"] == 255
    headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert "Idempotency-Key" in headers
    for code in ("200", "201"):
        schema = operation["responses"][code]["content"]["application/json"]["schema"]
        assert schema == {"$ref": DECISION_REF}


def test_the_decision_representation_matches_the_design(openapi):
    decision = _resolve(openapi, DECISION_REF)
    design = {
        "id",
        "status",
        "action",
        "summary",
        "params",
        "approved_params",
        "policy",
        "risk",
        "required_approvals",
        "reviews",
        "behaviour_version",
        "created_at",
        "expires_at",
        "release",
    }
    assert design <= set(decision["required"])
    assert decision["properties"]["id"]["format"] == "uuid"
    policy = _resolve(openapi, decision["properties"]["policy"]["$ref"])
    assert set(policy["required"]) == {"outcome", "rule", "explanation"}
    release = _resolve(openapi, decision["properties"]["release"]["$ref"])
    assert set(release["required"]) == {"status", "attempts", "result", "released_at"}
    review = _resolve(openapi, decision["properties"]["reviews"]["items"]["$ref"])
    assert {"verdict", "comment", "reviewer", "at"} <= set(review["required"])


def test_list_and_feedback_document_their_cursors(openapi):
    listing = _operation(openapi, "/api/v1/decisions/", "get")
    query = {p["name"]: p for p in listing["parameters"] if p["in"] == "query"}
    assert set(query) == {"status", "cursor"}
    assert "pending" in query["status"]["schema"]["enum"]
    feedback = _operation(openapi, "/api/v1/feedback/", "get")
    assert [p["name"] for p in feedback["parameters"] if p["in"] == "query"] == ["after"]
    behaviour = _operation(openapi, "/api/v1/behaviour/", "get")
    assert "304" in behaviour["responses"]
    assert [p["name"] for p in behaviour["parameters"] if p["in"] == "header"] == ["If-None-Match"]


def test_the_docs_page_uses_only_local_assets(static_client):
    client = static_client
    response = client.get(DOCS_URL)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "swagger-ui" in page
    for marker in CDN_MARKERS:
        assert marker not in page, marker
    assets = _Assets()
    assets.feed(page)
    urls = [tag["src"] for tag in assets.scripts if tag.get("src")]
    urls += [tag["href"] for tag in assets.links if tag.get("rel") in {"stylesheet", "icon"}]
    assert any(url.endswith("swagger-ui-bundle.js") for url in urls)
    assert any(url.endswith("swagger-ui.css") for url in urls)
    for url in urls:
        assert url.startswith("/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        body = b"".join(asset.streaming_content) if asset.streaming else asset.content
        assert body, url
        if url.startswith("/static/"):
            continue
        # The Swagger UI init script, served by the docs view itself.
        assert asset["Content-Type"].startswith(("application/javascript", "text/javascript"))
        script = body.decode()
        assert "SwaggerUIBundle(" in script
        assert f'url: "{SCHEMA_URL}"' in script
        for marker in CDN_MARKERS:
            assert marker not in script, marker


def test_the_docs_page_runs_under_the_csp_without_inline_script_or_style(client):
    response = client.get(DOCS_URL)
    csp = _csp(response)
    assert "'unsafe-inline'" not in csp["script-src"]
    assert "'unsafe-eval'" not in csp["script-src"]
    assert "'unsafe-inline'" not in csp["style-src"]
    nonces = {value for value in csp["script-src"] if value.startswith("'nonce-")}
    assets = _Assets()
    assets.feed(response.content.decode())
    assert assets.scripts
    for script in assets.scripts:
        # An inline script would be blocked unless it carries the header's nonce.
        assert script.get("src") or f"'nonce-{script.get('nonce')}'" in nonces, script
    # style-src has no nonce: an inline <style> or style attribute would be blocked.
    assert (assets.styles, assets.style_attributes) == (0, 0)


CSP_LISTENER = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  const violation = `${event.effectiveDirective} ${event.blockedURI} ${event.sample}`;
  window.cspViolations.push(violation);
  console.error(`Refused by the CSP: ${violation}`);
}, true);
"""


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_swagger_ui_renders_every_operation_in_a_browser_under_the_csp(live_server):
    """The header check above, confirmed by a real browser: the CSP blocks nothing at all."""
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = _chromium()
    if executable is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("CI=true and Chromium is missing", pytrace=False)
        pytest.skip("needs Chromium")
    problems: list[str] = []

    def on_console(message):
        # Any violation: a blocked script leaves the page blank, a blocked style breaks it.
        text = message.text
        if message.type == "error" and ("Content Security Policy" in text or "CSP" in text):
            problems.append(text)

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            # Chromium does not log every violation (eval, for one) to the console.
            page.add_init_script(CSP_LISTENER)
            page.on("console", on_console)
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
            page.goto(f"{live_server.url}{DOCS_URL}")
            try:
                page.wait_for_selector(".opblock", timeout=15_000)
            except sync_api.TimeoutError:
                problems.append("Swagger UI rendered no operation")
            rendered = page.locator(".opblock").count()
            # Expand an operation, so the styles it brings in are applied under the CSP too.
            if rendered:
                page.locator(".opblock-summary").first.click()
                page.wait_for_selector(".opblock-body", timeout=5_000)
            problems += [f"violation: {v}" for v in page.evaluate("window.cspViolations")]
        finally:
            browser.close()
    assert problems == []
    assert rendered == len(OPERATIONS)
