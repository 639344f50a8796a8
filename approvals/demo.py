"""The demo fleet's approval step: the refund and outbound-email agents ask before acting.

An agent about to issue a large refund or send an email posts an approval request through the
API, waits on the long-poll in a thread of its own (the rest of the fleet carries on), and then
finishes its run on the decision: approved, it acts with the effective arguments (a reviewer may
have edited them); rejected or expired, it tells the user a person will follow up. The run's
trace shows the approval step with the wait and the outcome, under the trace id the request
named, so the request page links to it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid

from traces import demo

logger = logging.getLogger(__name__)

ASKING_AGENTS = {"refund-agent": "issue_refund", "outbound-email": "send_email"}
# Of those agents' runs, this share asks; at most this many requests wait at once per agent.
ASK_CHANCE = 0.3
MAX_WAITING = 3
WAIT_SECONDS = 30
GIVE_UP_AFTER = 4 * 3600


def maybe_ask(fleet, profile, version: str) -> threading.Thread | None:
    """Start an approval flow for this agent now and then; None when it does not ask."""
    if profile.name not in ASKING_AGENTS or fleet.rng.random() >= ASK_CHANCE:
        return None
    with fleet._lock:
        waiting = fleet.approvals_waiting.get(profile.name, 0)
        if waiting >= MAX_WAITING:
            return None
        fleet.approvals_waiting[profile.name] = waiting + 1
    flow = threading.Thread(
        target=_flow,
        args=(fleet, profile, version, random.Random(fleet.rng.getrandbits(64))),
        name=f"demo-approval-{profile.name}",
        daemon=True,
    )
    flow.start()
    return flow


def request_for(profile, rng: random.Random, trace_id: str) -> dict:
    """The approval request the agent posts (what it wants to do, and why)."""
    name, email, _ = rng.choice(demo.CUSTOMERS)
    request = {
        "idempotency_key": f"demo-{uuid.UUID(int=rng.getrandbits(128))}",
        "agent": profile.name,
        "trace_id": trace_id,
        "risk": "high",
    }
    if profile.name == "refund-agent":
        amount = rng.choice([650, 1200, 2400, 4000, 7800])
        order = f"A-{rng.randint(10000, 99999)}"
        return {
            **request,
            "action": "issue_refund",
            "arguments": {
                "order": order,
                "amount": amount,
                "currency": "USD",
                "reason": "charged twice",
            },  # fmt: skip
            "amount": str(amount),
            "currency": "USD",
            "summary": f"Refund {amount} USD on order {order} to {name}",
            "rationale": f"{name} was charged twice for order {order}; the duplicate charge "
            "shows in the payment log.",
        }
    return {
        **request,
        "action": "send_email",
        "arguments": {
            "to": email,
            "subject": "About your account",
            "body": f"Hello {name}, following up on your request.",
        },  # fmt: skip
        "summary": f"Email {email} about their account",
        "rationale": "The customer asked for a written confirmation.",
        "risk": "medium",
    }


def _flow(fleet, profile, version: str, rng: random.Random) -> None:
    try:
        _ask_wait_act(fleet, profile, version, rng)
    except Exception:  # noqa: BLE001 - one demo agent failing must not stop the others
        logger.exception("demo fleet: an approval flow failed")
    finally:
        with fleet._lock:
            fleet.approvals_waiting[profile.name] -= 1


def _ask_wait_act(fleet, profile, version: str, rng: random.Random) -> None:
    base, key = fleet.controls.base_url, fleet.key
    trace_id = rng.getrandbits(128) or 1
    asked = request_for(profile, rng, format(trace_id, "032x"))
    status, created = demo.http_json("POST", f"{base}/api/v1/approvals", key, asked, timeout=10)
    if status not in (200, 201):
        logger.warning("demo fleet: approval request answered %s: %s", status, created)
        return
    started = time.monotonic()
    decision = created
    while decision.get("status") == "pending" and time.monotonic() - started < GIVE_UP_AFTER:
        try:
            status, decision = demo.http_json(
                "GET", f"{base}/api/v1/approvals/{created['id']}?wait={WAIT_SECONDS}", key,
                timeout=WAIT_SECONDS + 10,
            )  # fmt: skip
        except OSError:
            time.sleep(5)
            decision = {"status": "pending"}
            continue
        if status != 200:
            time.sleep(5)
            decision = {"status": "pending"}
    waited_ms = (time.monotonic() - started) * 1000
    root = _run(fleet, profile, version, rng, asked, decision, waited_ms)
    fleet.emit_with_trace_id(profile, version, root, trace_id)
    logger.info("demo fleet: %s's request #%s was %s", profile.name, created["id"],
                decision.get("status"))  # fmt: skip


def _run(fleet, profile, version, rng, asked, decision, waited_ms) -> demo.SimSpan:
    """The whole run as the agent lived it: decide to act, ask, wait, act or not, answer."""
    builder = demo.RunBuilder(profile, rng, version=version)
    conversation = fleet._conversation(profile)
    model = rng.choice(profile.models)
    builder.messages.append(demo._text_message("user", asked["rationale"]))
    tool = ASKING_AGENTS[profile.name]
    builder.model_call(model, "", tool_call=("request_approval", asked["arguments"]))
    approval = builder.tool_call(
        "request_approval",
        {"action": tool, "arguments": asked["arguments"]},
        {key: decision.get(key) for key in ("status", "decided_by", "comment", "edited")},
        duration_ms=waited_ms,
    )
    approval.attributes["cockpit.span.kind"] = "approval"
    approved = decision.get("status") == "approved"
    if approved:
        arguments = decision.get("arguments") or asked["arguments"]
        builder.model_call(model, "", tool_call=(tool, arguments))
        builder.tool_call(tool, arguments, demo._tool_result(tool, rng))
        outcome, answer = "success", "Done: a reviewer approved it and I went ahead."
    else:
        outcome = "escalated"
        answer = "I could not do this on my own; a colleague will follow up with you."
    builder.model_call(model, answer)
    attributes = demo._root_attributes(builder, model, conversation, outcome,
                                       asked["rationale"], answer)  # fmt: skip
    return demo.SimSpan(
        name=f"invoke_agent {profile.name}",
        start_ms=0.0,
        duration_ms=builder.cursor + rng.uniform(5, 50),
        attributes=attributes,
        children=builder.steps,
    )
