"""The console's safety desk in a real browser (issue 17, item 5), on the console tests'
shared server (``console_lab``): a held unlock of the CNC door (the demo lab's
cnc-room: one safety approval, PPE confirmed because the zone requires it) approved with
passkeys from two browser contexts.

Sam and Sasha (both safety) each make their passkey an approval key and confirm the
other's; the requester's own passkey is refused, a passkey not yet confirmed by a second
safety person is refused, and the confirmed one approves: the door unlocks (acked)."""

from __future__ import annotations

from typing import Any

from tests.e2e.console_lab import Lab, _context, _enrol, _shot, needs_chromium

pytestmark = needs_chromium


# The approve button's flow, run by hand: the server must refuse what the page hides.
APPROVE_BY_HAND = """async ([eventId, ppe]) => {
  const b = (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4)), c => c.charCodeAt(0)).buffer;
  const u = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
  const csrf = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token'];
  const post = (url, body) => fetch(url, {method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf}, body: JSON.stringify(body)});
  const url = `/console/safety/events/${eventId}/approve`;
  const start = await (await post(url + '/options', {})).json();
  const o = start.publicKey;
  o.challenge = b(o.challenge);
  o.allowCredentials.forEach(c => { c.id = b(c.id); });
  const cred = await navigator.credentials.get({publicKey: o});
  const r = cred.response;
  const answer = await post(url, {nonce: start.nonce, payload: start.payload, ppe, credential: {
    id: cred.id, rawId: u(cred.rawId), type: cred.type, clientExtensionResults: {},
    response: {clientDataJSON: u(r.clientDataJSON), authenticatorData: u(r.authenticatorData),
               signature: u(r.signature), userHandle: r.userHandle ? u(r.userHandle) : undefined}}});
  return [answer.status, await answer.json()];
}"""


def _desk(lab: Lab, page: Any) -> None:
    page.goto(lab.url + "/safety")
    page.wait_for_selector("#pending")


def _confirmations(lab: Lab, page: Any) -> None:
    page.goto(lab.url + "/safety/confirmations")
    page.wait_for_selector(".safety-passkeys")


def _make_approval_key(lab: Lab, page: Any) -> None:
    _confirmations(lab, page)
    page.get_by_role("button", name="Use this passkey to approve").click()
    page.wait_for_selector("text=awaits a second safety person")


def _confirm(lab: Lab, page: Any, owner: str) -> None:
    _confirmations(lab, page)
    row = page.locator(f"#{page.locator('tr', has_text=owner).get_attribute('id')}")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Confirm").click()
    row.locator(".outcome").wait_for()
    assert "signs approvals from now on" in row.inner_text()


def test_a_held_unlock_is_approved_with_a_passkey_and_executes(lab: Lab, browser: Any) -> None:
    sam = _context(browser).new_page()
    sasha = _context(browser).new_page()
    _enrol(lab, sam, "sam")
    _enrol(lab, sasha, "sasha")
    _make_approval_key(lab, sam)
    _make_approval_key(lab, sasha)
    _confirm(lab, sasha, "Sam Safety")  # Sam's passkey approves; Sasha's still waits

    # Sam asks for the CNC door from the floor: held, nothing sent.
    sam.goto(lab.url + "/")
    door = sam.locator('article.tile[data-device="cnc-door"]')
    door.locator("button[data-intent=door_unlock]").click()
    door.locator(".outcome.held").wait_for()

    _desk(lab, sam)
    card = sam.locator("article.safety-event").first
    event_id = card.get_attribute("data-event")
    text = card.inner_text()
    assert "Sam Safety" in text and "cnc-room" in text and "cnc-room-hazards" in text
    assert "1 signed approval by safety" in text
    assert "PPE" in text
    # The requester sees no approve button; the server refuses their passkey anyway.
    assert card.locator("form[data-approve]").count() == 0
    assert "You asked for this" in text
    status, problem = sam.evaluate(APPROVE_BY_HAND, [event_id, ["safety_glasses"]])
    assert status == 403, problem
    assert "requester" in problem["detail"] or "asked" in problem["detail"], problem

    # Sasha's passkey is not confirmed yet: refused, in words, on her card.
    _desk(lab, sasha)
    card = sasha.locator(f'article.safety-event[data-event="{event_id}"]')
    card.get_by_label("PPE you are wearing").fill("safety_glasses")
    _shot(sasha, "safety-desk")
    card.get_by_role("button", name="Approve with my passkey").click()
    card.locator(".result.error").wait_for(timeout=15_000)
    assert "awaits confirmation by a second person" in card.locator(".result").inner_text()

    # Sam confirms Sasha's passkey; now it approves, and the door is unlocked.
    _confirm(lab, sam, "Sasha Safety")
    _desk(lab, sasha)
    card = sasha.locator(f'article.safety-event[data-event="{event_id}"]')
    card.get_by_label("PPE you are wearing").fill("safety_glasses")
    card.get_by_role("button", name="Approve with my passkey").click()
    sasha.locator("#desk-message.ok").wait_for(timeout=15_000)
    assert "Approved" in sasha.locator("#desk-message").inner_text()
    event = sasha.request.get(f"{lab.url}/api/safety/events/{event_id}").json()
    assert event["status"] == "approved"
    command_url = f"{lab.url}/api/commands/{event['commandId']}"
    for _ in range(100):
        if sasha.request.get(command_url).json()["status"] == "acked":
            break
        sasha.wait_for_timeout(100)
    assert sasha.request.get(command_url).json()["status"] == "acked"
    assert "nothing is waiting" in sasha.locator("#pending").inner_text().lower()
    sasha.locator("#recent .badge.status-approved").wait_for(timeout=5_000)
    _shot(sasha, "safety-desk-decided")
