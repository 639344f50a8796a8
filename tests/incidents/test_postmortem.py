"""Postmortems: sanitised Markdown whatever is typed in, the template, the editor's status
flow, and the Markdown export."""

import re
from html.parser import HTMLParser

import pytest
from django.urls import reverse

from incidents.actions import (
    do_add_action_item,
    do_add_note,
    do_save_postmortem,
    do_set_postmortem_status,
    do_star,
)
from incidents.models import Postmortem
from incidents.postmortem import document, md_code, md_escape, render_markdown, template_for

pytestmark = pytest.mark.django_db


class Elements(HTMLParser):
    """Every element of an HTML fragment with its attributes, as a browser would build them."""

    def __init__(self, html: str):
        super().__init__()
        self.found: list[tuple[str, dict]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))


def assert_harmless(html: str) -> None:
    for tag, attrs in Elements(html).found:
        assert tag not in {"script", "iframe", "style", "svg", "object", "embed", "form"}, tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            assert name != "style" or "url(" not in (value or ""), (tag, value)
            if name in ("href", "src"):
                # What a browser reads as a scheme; anything else is a harmless relative URL.
                scheme = re.match(r"^\s*([a-zA-Z][a-zA-Z0-9+.-]*):", value or "")
                assert scheme is None or scheme[1].lower() in {"http", "https", "mailto"}, value


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        '<a href="#" onclick="alert(1)">x</a>',
        "[click](javascript:alert(1))",
        "[click](JaVaScRiPt:alert(1))",
        "[click](<javascript:alert(1)>)",
        "[click](java&#x09;script:alert(1))",
        "![pixel](data:image/png;base64,iVBORw0KGgo=)",
        "[x](data:text/html;base64,PHNjcmlwdD4=)",
        "<iframe src=https://evil.example></iframe>",
        "<style>body{display:none}</style>",
        '<div style="background:url(javascript:x)">x</div>',
        "[x](vbscript:msgbox(1))",
        '<svg onload="alert(1)"></svg>',
        "<javascript:alert(1)>",
        "[ref]\n\n[ref]: javascript:alert(1)",
    ],
)
def test_hostile_markdown_renders_harmless(hostile):
    html = render_markdown(f"Before\n\n{hostile}\n\nAfter")
    assert_harmless(html)
    assert "<p>After</p>" in html


def test_a_data_image_loses_its_source():
    html = render_markdown("![pixel](data:image/png;base64,iVBORw0KGgo=)")
    images = [attrs for tag, attrs in Elements(html).found if tag == "img"]
    assert images == [{"alt": "pixel"}]


def test_the_sanitiser_itself_strips_what_markdown_might_let_through():
    # Defence in depth: even HTML that reached nh3 directly loses handlers and bad URLs.
    from incidents.postmortem import clean_html

    html = clean_html(
        '<a href="javascript:x" onclick="y">a</a><img src="data:image/png;base64,AA" '
        'onerror="z"><script>s</script><p style="color:red">p</p>'
    )
    assert_harmless(html)
    assert "<script" not in html and "onclick" not in html and "javascript" not in html
    assert "data:" not in html and "style=" not in html


def test_raw_html_is_shown_as_text_not_run():
    html = render_markdown("<b onmouseover=x>bold?</b>")
    assert "&lt;b" in html
    assert "<b " not in html


def test_ordinary_markdown_keeps_its_formatting():
    html = render_markdown(
        "## Impact\n\n- **12** users\n- `issue_refund`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "[runbook](https://wiki.example/runbook) and <mailto:oncall@example.com>"
    )
    assert "<h2>Impact</h2>" in html
    assert "<strong>12</strong>" in html and "<code>issue_refund</code>" in html
    assert "<table>" in html and "<td>2</td>" in html
    assert 'href="https://wiki.example/runbook"' in html
    assert 'rel="noopener noreferrer nofollow"' in html
    assert 'href="mailto:oncall@example.com"' in html


def test_agent_text_is_escaped_into_markdown():
    assert render_markdown(md_escape("[x](javascript:y) *z* <b>")).count("<a") == 0
    assert "<em>" not in render_markdown(md_escape("*z*"))
    assert render_markdown(md_code("a`b")) == "<p><code>a`b</code></p>\n"


def test_the_template_has_every_section_and_the_agent_specifics(open_incident, run, people):
    incident = open_incident(failure_chain=["The tool timed out", "The agent retried"])
    from incidents.actions import do_link_run

    do_link_run(incident, run, relation="trigger", user=people["commander"])
    body = template_for(incident)
    for section in (
        "## Summary", "## Impact", "## Trigger", "## Root causes and contributing factors",
        "## Detection", "## Response", "## Recovery", "## What went well",
        "## What went poorly", "## Where we got lucky", "## Agent specifics",
        "### Failure chain",
    ):  # fmt: skip
        assert section in body
    assert "1. The tool timed out\n2. The agent retried" in body
    assert "**Tools called:**" in body and "**Approval path:**" in body
    assert "**Guardrails in the linked runs:**" in body


def test_the_document_lists_starred_events_and_action_items(incident, people):
    note = do_add_note(incident, user=people["commander"], text="Rolled back <b>2.4.0</b>")
    do_add_note(incident, user=people["commander"], text="Unstarred chatter")
    do_star(note, user=people["commander"], starred=True)
    do_add_action_item(
        incident,
        user=people["commander"],
        title="Add a guard",
        kind="prevent",
        owner=people["commander"],
    )
    do_save_postmortem(incident, user=people["commander"], body="## Summary\n\nIt broke.")
    text = document(incident)
    assert text.startswith("# Postmortem: Refunds sent twice")
    assert "## Summary\n\nIt broke." in text
    assert "Rolled back \\<b\\>2.4.0\\</b\\>" in text
    assert "Unstarred chatter" not in text
    assert "| Add a guard | prevent | commander |" in text


def test_saving_then_publishing_through_the_pages(client_as, incident):
    client = client_as("commander")
    client.post(reverse("incident-postmortem-save", args=[incident.pk]), {"body": "## Summary"})
    postmortem = Postmortem.objects.get(incident=incident)
    assert postmortem.status == "draft"
    client.post(reverse("incident-postmortem-status", args=[incident.pk]), {"status": "in_review"})
    client.post(reverse("incident-postmortem-status", args=[incident.pk]), {"status": "published"})
    postmortem.refresh_from_db()
    assert postmortem.status == "published"
    assert postmortem.published_at is not None


def test_a_draft_cannot_be_published_without_review(incident, people):
    postmortem = do_save_postmortem(incident, user=people["commander"], body="x")
    with pytest.raises(Exception, match="cannot move to published"):
        do_set_postmortem_status(postmortem, "published", user=people["commander"])


def test_a_published_postmortem_is_read_only(incident, people, client_as):
    postmortem = do_save_postmortem(incident, user=people["commander"], body="x")
    do_set_postmortem_status(postmortem, "in_review", user=people["commander"])
    do_set_postmortem_status(postmortem, "published", user=people["commander"])
    response = client_as("commander").post(
        reverse("incident-postmortem-save", args=[incident.pk]), {"body": "rewritten"}, follow=True
    )
    assert b"read-only" in response.content
    postmortem.refresh_from_db()
    assert postmortem.body == "x"


def test_the_preview_renders_sanitised_html(client_as, incident):
    response = client_as("commander").post(
        reverse("incident-postmortem-preview", args=[incident.pk]),
        {"body": "# Title\n\n<script>x</script>[a](javascript:b)"},
    )
    assert response.status_code == 200
    assert b"<h1>Title</h1>" in response.content
    assert b"<script>" not in response.content
    assert_harmless(response.content.decode())


def test_the_page_shows_the_template_to_a_commander_before_anything_is_saved(client_as, incident):
    body = client_as("commander").get(reverse("incident-postmortem", args=[incident.pk])).content
    assert b"## Root causes and contributing factors" in body  # in the editor
    assert b"<h2>Summary</h2>" not in body  # nothing saved yet, so the document has no body


def test_a_viewer_reads_the_document_without_an_editor(client_as, incident, people):
    do_save_postmortem(incident, user=people["commander"], body="## Summary\n\nIt <i>broke</i>.")
    body = client_as("viewer").get(reverse("incident-postmortem", args=[incident.pk])).content
    assert b"<h2>Summary</h2>" in body
    assert b"&lt;i&gt;broke&lt;/i&gt;" in body
    assert b'id="pm-body"' not in body


def test_the_export_is_a_markdown_download(client_as, incident, people):
    do_save_postmortem(incident, user=people["commander"], body="## Summary\n\nIt broke.")
    response = client_as("viewer").get(reverse("incident-postmortem-export", args=[incident.pk]))
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="incident-{incident.pk}-postmortem.md"'
    )
    assert b"## Summary\n\nIt broke." in response.content
