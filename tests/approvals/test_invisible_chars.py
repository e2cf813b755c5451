"""What the reviewer sees is what will run: invisible and direction-changing
characters in agent text are shown as marked code points, with a warning."""

import io
import json
import re

import pytest
import yaml
from django.core.management import CommandError, call_command
from django.template import Context, Template
from rest_framework.test import APIClient

from agents.models import Agent, Alert
from agents.services import agent_key_issue
from approvals.models import Decision
from tests.factories import (
    ActionTypeFactory,
    AgentFactory,
    BehaviourVersionFactory,
    GrantFactory,
    UserFactory,
    auditor,
    reviewer,
)

pytestmark = pytest.mark.django_db

RLO = "\u202e"
ZWJ = "\u200d"
MARK_RLO = '<mark class="invisible-char" title="RIGHT-TO-LEFT OVERRIDE">⟨U+202E⟩</mark>'
MARK_ZWJ = '<mark class="invisible-char" title="ZERO WIDTH JOINER">⟨U+200D⟩</mark>'
WARNING = 'data-warning="invisible-characters"'
FLAG = 'data-flag="invisible-characters"'
HOSTILE = '<script>alert(1)</script><b hx-get="/inbox/" hx-trigger="load">x</b>'


def render(source: str, **context) -> str:
    return Template("{% load approvals_extras %}" + source).render(Context(context))


# --- the filter ------------------------------------------------------------------------


def test_a_right_to_left_override_is_shown_as_its_code_point():
    assert render("{{ v|reveal }}", v=f"amount {RLO}0005 EUR") == f"amount {MARK_RLO}0005 EUR"


@pytest.mark.parametrize(
    ("char", "code"),
    [
        ("\u202a", "202A"),
        ("\u202d", "202D"),
        ("\u2066", "2066"),
        ("\u2069", "2069"),
        ("\u061c", "061C"),
        ("\u200b", "200B"),
        ("\u200f", "200F"),
        ("\u2060", "2060"),
        ("\u2064", "2064"),
        ("\ufeff", "FEFF"),
        ("\u180e", "180E"),
        ("\u00ad", "00AD"),
        ("\u3164", "3164"),
        ("\U000e0041", "E0041"),
        ("\x00", "0000"),
        ("\r", "000D"),
        ("\x1b", "001B"),
        ("\x85", "0085"),
        ("\u2028", "2028"),
    ],
)
def test_each_invisible_or_control_character_gets_a_marker(char, code):
    html = render("{{ v|reveal }}", v=f"a{char}b")
    marker = rf'<mark class="invisible-char" title="[A-Z -]+">⟨U\+{code}⟩</mark>'
    assert re.fullmatch(f"a{marker}b", html)
    assert char not in html


@pytest.mark.parametrize(
    "text", ["plain text", "tab\tand\nnewline", "crlf\r\nline", "emoji ❤️", "עברית", "café"]
)
def test_ordinary_text_tabs_newlines_and_variation_selectors_are_left_alone(text):
    assert render("{{ v|reveal }}", v=text) == text
    assert render("{{ v|has_invisible }}", v=text) == "False"


def test_agent_html_around_a_marker_stays_escaped():
    html = render("{{ v|reveal }}", v=f"{HOSTILE}{ZWJ}{HOSTILE}")
    assert "<script" not in html
    assert "<b " not in html
    assert html.count("&lt;script&gt;") == 2
    assert html.count(MARK_ZWJ) == 1
    assert re.sub(r"<mark [^>]*>[^<]*</mark>", "", html).count("<") == 0


def test_line_breaks_survive_after_the_markers():
    assert render("{{ v|reveal|linebreaksbr }}", v=f"one{ZWJ}\n<two>") == (
        f"one{MARK_ZWJ}<br>&lt;two&gt;"
    )


def test_attributes_get_plain_text_markers():
    assert render('<a title="{{ v|reveal_text }}">', v=f'{RLO}"x') == '<a title="⟨U+202E⟩&quot;x">'


def test_nested_keys_and_values_are_inspected():
    assert render("{{ v|has_invisible }}", v={"a": [{"b": f"x{RLO}"}]}) == "True"
    assert render("{{ v|has_invisible }}", v={f"k{ZWJ}": 1}) == "True"
    assert render("{{ v|has_invisible }}", v={"a": [{"b": "x"}], "n": 1}) == "False"


def test_a_megabyte_of_text_renders():
    html = render("{{ v|reveal }}", v=("x" * 1023 + RLO) * 1024)
    assert html.count("⟨U+202E⟩") == 1024


# --- the pages ---------------------------------------------------------------------------


@pytest.fixture
def hidden(api, email_body):
    """A pending email whose subject reads "5000 EUR" but is <RLO>0005, with hostile HTML,
    a zero-width joiner in nested evidence and a long body folded in the detail panel."""
    body = {
        **email_body,
        "params": {
            "to": ["lead@example.com"],
            "subject": f"Refund {RLO}0005 EUR {HOSTILE}",
            "body": "Dear customer, " * 20 + f"pay to DE{ZWJ}89 3704",
        },
        "reasoning": f"Customer{ZWJ} asked.\n{HOSTILE}",
        "evidence": {"ticket": {"id": f"T{ZWJ}1", "note": HOSTILE}, f"k{RLO}ey": "v"},
    }
    response = api.post("/api/v1/decisions/", body, format="json")
    assert response.status_code == 201, response.content
    decision = Decision.objects.get(pk=response.json()["id"])
    assert decision.status == Decision.Status.PENDING
    return decision


@pytest.fixture
def clean(api, email_body):
    response = api.post("/api/v1/decisions/", email_body, format="json")
    assert response.status_code == 201
    return Decision.objects.get(pk=response.json()["id"])


def assert_no_agent_markup(html: str) -> None:
    assert "<script>alert" not in html
    assert 'hx-get="/inbox/" hx-trigger="load"' not in html
    assert "&lt;script&gt;" in html
    assert RLO not in html and ZWJ not in html


def test_the_inbox_detail_marks_hidden_characters_and_warns_once(client, hidden):
    client.force_login(reviewer())
    html = client.get(f"/inbox/{hidden.pk}/").content.decode()
    assert html.count(WARNING) == 1
    assert "contains invisible or direction-changing characters" in html
    assert f"Refund {MARK_RLO}0005 EUR" in html  # the summary, and the exact action
    assert html.count(f"Refund {MARK_RLO}0005") >= 2
    assert f"pay to DE{MARK_ZWJ}89" in html  # inside the folded long value
    assert f"Customer{MARK_ZWJ} asked." in html  # reasoning
    assert f"T{MARK_ZWJ}1" in html  # nested evidence
    assert f"k{MARK_RLO}ey" in html  # an evidence key
    assert_no_agent_markup(html)


def test_the_htmx_detail_fragment_marks_them_too(client, hidden):
    client.force_login(reviewer())
    html = client.get(f"/inbox/{hidden.pk}/", headers={"HX-Request": "true"}).content.decode()
    assert html.count(WARNING) == 1
    assert MARK_RLO in html
    assert_no_agent_markup(html)


def test_the_inbox_list_flags_only_the_row_with_hidden_characters(client, hidden, clean):
    client.force_login(reviewer())
    html = client.get(f"/inbox/{clean.pk}/").content.decode()
    rows = dict(re.findall(r'<tr class="inbox-row[^"]*" data-id="([^"]+)">(.*?)</tr>', html, re.S))
    assert FLAG in rows[str(hidden.pk)]
    assert MARK_RLO in rows[str(hidden.pk)]
    assert FLAG not in rows[str(clean.pk)]
    assert WARNING not in html  # the open decision is the clean one
    assert_no_agent_markup(html)


def test_a_clean_decision_has_no_warning(client, clean):
    client.force_login(reviewer())
    html = client.get(f"/inbox/{clean.pk}/").content.decode()
    assert WARNING not in html and "invisible-char" not in html


def test_the_trail_marks_hidden_characters_and_warns_once(client, hidden):
    client.force_login(auditor())
    html = client.get(f"/audit/decisions/{hidden.pk}/").content.decode()
    assert html.count(WARNING) == 1
    assert f"Refund {MARK_RLO}0005 EUR" in html
    assert f"Customer{MARK_ZWJ} asked." in html  # reasoning in the submitted event
    assert f"T{MARK_ZWJ}1" in html
    assert_no_agent_markup(html)


def test_the_audit_search_marks_the_summary(client, hidden, clean):
    client.force_login(auditor())
    html = client.get("/audit/").content.decode()
    assert f"Refund {MARK_RLO}0005" in html
    assert html.count(FLAG) == 1
    assert_no_agent_markup(html)


def test_exports_keep_the_characters_byte_exact(client, hidden):
    client.force_login(auditor())
    csv = b"".join(client.get("/audit/export.csv").streaming_content).decode()
    assert f"Refund {RLO}0005 EUR" in csv
    assert f"Customer{ZWJ} asked." in csv
    jsonl = b"".join(client.get("/audit/export.jsonl").streaming_content).decode()
    submitted = next(
        json.loads(line)
        for line in jsonl.splitlines()
        if json.loads(line)["event"] == "decision.submitted"
    )
    assert submitted["data"]["params"]["subject"] == hidden.params["subject"]
    assert "⟨U+" not in csv + jsonl


# --- the optional anomaly rule -----------------------------------------------------------


def watched_agent(rules):
    agent = AgentFactory(slug="watched", owner=UserFactory(username="own"), anomaly_rules=rules)
    agent.active_behaviour = BehaviourVersionFactory(
        agent=agent, number=1, policy=[{"id": "all", "outcome": "allow"}]
    )
    agent.save()
    action = ActionTypeFactory(key="note.add", params_schema={"type": "object"})
    GrantFactory(agent=agent, action_type=action)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {agent_key_issue(agent=agent).secret}")
    return api


def send(api, params):
    body = {"action": "note.add", "params": params, "reasoning": "r"}
    return api.post("/api/v1/decisions/", body, format="json").json()


def test_hidden_characters_in_params_force_review_of_that_decision_only():
    api = watched_agent([{"rule": "invisible_characters", "action": "force_review"}])
    assert send(api, {"title": "plain"})["status"] == "approved"
    held = send(api, {"title": "x", "lines": [{f"k{ZWJ}": f"{RLO}0005"}]})
    assert held["status"] == "pending"  # policy would allow
    decision = Decision.objects.get(pk=held["id"])
    assert decision.anomalies[0]["rule"] == "invisible_characters"
    assert "⟨U+200D⟩ ⟨U+202E⟩" in decision.anomalies[0]["message"]
    assert decision.risk == "high"
    [alert] = Alert.objects.filter(kind="anomaly.invisible_characters")
    assert alert.evidence["characters"] == ["⟨U+200D⟩", "⟨U+202E⟩"]
    assert send(api, {"title": "plain again"})["status"] == "approved"  # the agent is not held


def test_without_the_rule_hidden_characters_are_only_shown():
    api = watched_agent([])
    assert send(api, {"title": f"{RLO}x"})["status"] == "approved"
    assert not Alert.objects.exists()


def test_the_rule_is_declared_in_governance_yaml(tmp_path):
    UserFactory(username="owner")
    rules = [{"rule": "invisible_characters", "action": "force_review"}]
    config = {
        "action_types": [
            {"key": "email.send", "name": "Send", "params_schema": {}, "irreversible": True}
        ],
        "agents": [{"slug": "a1", "name": "A1", "owner": "owner", "anomalies": rules}],
    }
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(config))
    call_command("apply_governance", str(path), stdout=io.StringIO())
    assert Agent.objects.get(slug="a1").anomaly_rules == rules
    config["agents"][0]["anomalies"] = [{"rule": "invisible_characters", "window": "1h"}]
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(CommandError, match="window: unknown key"):
        call_command("apply_governance", str(path), stdout=io.StringIO())


def test_the_edit_form_spells_out_hidden_characters_under_each_field(client, hidden):
    client.force_login(reviewer())
    html = client.get(f"/inbox/{hidden.pk}/edit/").content.decode()
    assert html.count(WARNING) == 1
    note = r'<p class="field-help" data-warning="invisible-field">(.*?)</p>'
    notes = re.findall(note, html, re.S)
    assert len(notes) == 2  # subject and body; `to` is clean
    assert any(f"Refund {MARK_RLO}0005 EUR &lt;script&gt;" in note for note in notes)
    assert "<script>alert" not in html
