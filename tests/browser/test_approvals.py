"""The approval queue in a real browser: a new request appears live with a notification, its
countdown ticks, the reviewer approves it with edited arguments, and the agent long-polling the
API receives exactly those arguments. Also: a decision made elsewhere shows up live, and the
page's own checks and shortcuts."""

import json
import re
import threading
import urllib.request

import pytest
from playwright.sync_api import expect

from approvals import engine
from approvals.models import ApprovalRequest
from cockpit.roles import REVIEWER
from tests.approvals.builders import ask, chain, policy
from tests.approvals.conftest import make_person
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def in_thread(work):
    """Run as a worker would: in a thread with no event loop (Playwright runs one here)."""
    result, errors = [], []

    def run():
        try:
            result.append(work())
        except Exception as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def call_api(url: str, key: str, body: dict | None = None, timeout: float = 10) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def log_in(page, base_url: str, user) -> None:
    """Log in through the real form; wherever the login lands a reviewer (the fleet today,
    perhaps the queue), leave it to the test to go on."""
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(user.get_username())
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login/" not in url)


@pytest.fixture
def lena(transactional_db):
    """An L1 reviewer of the refunds chain, which the refunds policy uses."""
    policy(chain("refunds-chain", minutes=(10, 10, 10, 10)), name="large refunds")
    return make_person("lena", REVIEWER, "reviewers-l1")


def test_a_new_request_arrives_live_and_its_edited_approval_reaches_the_waiting_agent(
    page, asgi_live_server, ingest_key, lena
):
    base = asgi_live_server.url
    log_in(page, base, lena)
    page.goto(f"{base}/approvals/")
    page.wait_for_function("document.body.dataset.live === 'on'")
    expect(page.get_by_text("Nothing is waiting for a decision")).to_be_visible()

    created = in_thread(
        lambda: call_api(
            f"{base}/api/v1/approvals",
            ingest_key,
            {
                "idempotency_key": "refund-A-1001",
                "agent": "refund-bot",
                "action": "refund",
                "arguments": {"order": "A-1001", "amount": 4000, "currency": "USD"},
                "amount": "4000",
                "currency": "USD",
                "summary": "Refund order A-1001",
                "rationale": "The customer was charged twice.",
                "risk": "high",
            },
        )
    )

    toast = page.locator(".toast")
    expect(toast).to_contain_text("New approval request: refund-bot wants to refund (4,000.00 USD)")
    row = page.locator(f'tr.queue-row[data-id="{created["id"]}"]')
    expect(row).to_be_visible()
    expect(row.locator(".badge.level")).to_have_text("L1")
    countdown = row.locator(".countdown")
    first = countdown.inner_text()
    page.wait_for_function(
        "([el, text]) => el.textContent !== text", arg=[countdown.element_handle(), first],
        timeout=3000,
    )  # fmt: skip

    # The agent waits for the decision, as its SDK would.
    polled = {}
    poll = threading.Thread(
        target=lambda: polled.update(
            call_api(f"{base}/api/v1/approvals/{created['id']}?wait=30", ingest_key, timeout=40)
        )
    )
    poll.start()

    # j selects the first request, e opens it with the argument editor.
    page.keyboard.press("j")
    page.keyboard.press("e")
    page.wait_for_url(f"{base}/approvals/{created['id']}/#edit")
    editor = page.locator("#id_arguments")
    expect(editor).to_be_focused()
    editor.fill('{"order": "A-1001", "amount": 2500, "currency": "USD"}')
    expect(page.locator("#edit-diff tr.change-changed")).to_contain_text("2500")
    page.get_by_role("button", name="Approve with these arguments").click()

    expect(page.locator("#approval-live")).to_contain_text("Approved with edited arguments by lena")
    poll.join(timeout=40)
    assert polled["status"] == "approved"
    assert polled["arguments"] == {"order": "A-1001", "amount": 2500, "currency": "USD"}
    assert polled["edited"] is True and polled["decided_by"] == "lena"
    assert page.errors == []


def test_a_decision_made_elsewhere_shows_live_and_locks_the_form(
    page, asgi_live_server, project, lena
):
    request = ask(project)
    rival = make_person("mara", REVIEWER, "reviewers-l1")
    log_in(page, asgi_live_server.url, lena)
    page.goto(f"{asgi_live_server.url}/approvals/{request.pk}/")
    page.wait_for_function("document.body.dataset.live === 'on'")

    in_thread(
        lambda: engine.do_decide(
            request.pk, rival, "reject", comment="Duplicate.", seen_sha256=request.arguments_sha256
        )
    )

    expect(page.locator("#approval-live")).to_contain_text("Rejected by mara")
    expect(page.locator("#decision")).to_contain_text("while you were reviewing it")
    expect(page.locator("#approval-timeline")).to_contain_text("Decided")


def test_the_page_checks_a_decision_before_sending_it(page, asgi_live_server, project, lena):
    request = ask(project)
    log_in(page, asgi_live_server.url, lena)
    page.goto(f"{asgi_live_server.url}/approvals/{request.pk}/")

    page.get_by_role("button", name="Reject").click()
    expect(page.locator("#comment-error")).to_have_text("Say why: a rejection needs a comment.")

    page.keyboard.press("Escape")  # leave the comment field: shortcuts work again
    page.keyboard.press("e")
    page.locator("#id_arguments").fill('["not", "an object"]')
    expect(page.locator("#arguments-error")).to_contain_text("must be a JSON object")
    expect(page.get_by_role("button", name="Approve with these arguments")).to_be_disabled()
    assert ApprovalRequest.objects.get(pk=request.pk).is_pending


def test_shortcuts_never_fire_while_typing(page, asgi_live_server, project, lena):
    request = ask(project)
    log_in(page, asgi_live_server.url, lena)
    page.goto(f"{asgi_live_server.url}/approvals/{request.pk}/")

    page.locator("#id_comment").type("a reason")
    expect(page.locator("#approve-button")).not_to_have_class(re.compile(r"\barmed\b"))
    expect(page.locator("#editor")).to_be_hidden()

    page.keyboard.press("Escape")
    page.keyboard.press("a")
    expect(page.locator("#approve-button")).to_be_focused()
    expect(page.locator("#approve-button")).to_have_class(re.compile(r"\barmed\b"))
    expect(page.locator("#armed-hint")).to_be_visible()
    page.keyboard.press("?")
    expect(page.locator("#shortcuts")).to_be_visible()
