"""The CAD studio in a real browser (issue 18, item 1), on the shared console lab
(``console_lab.py``), with the two offline providers this machine has (CadQuery and
FreeCAD) and WebGL on SwiftShader.

An engineer types a prompt and sees what the grammar assumes, generates it with both
providers and follows the job to the results side by side, each with a 3D view that
draws the part (its pixels are sampled); iterates "make it 5 mm taller" into a child job
whose part is 5 mm taller; and sends the part to a printer's queue in one step, which the
lineage then shows."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.console_lab import Lab, _context, _enrol, _shot, needs_chromium

pytest.importorskip("playwright.sync_api")
pytestmark = needs_chromium

PROMPT = "a 60 by 40 mounting plate, 4 mm thick, four M4 holes in the corners"
BUILD_TIMEOUT_MS = 90_000
STATE: dict[str, Any] = {}


def _finished(page: Any) -> None:
    page.wait_for_selector(
        "#job-progress[data-status=completed], #job-progress[data-status=failed]",
        timeout=BUILD_TIMEOUT_MS,
    )
    assert page.locator("#job-progress").get_attribute("data-status") == "completed"
    page.wait_for_function(
        "() => { const v = [...document.querySelectorAll('.viewer')];"
        " return v.length > 0 && v.every(e => e.dataset.state === 'drawn' || e.dataset.state === 'failed'); }",
        timeout=30_000,
    )


def _drawn(page: Any) -> list[dict[str, float]]:
    """Each viewer's share of non-background and of part-coloured pixels, read back."""
    samples: list[dict[str, float]] = page.evaluate(
        "[...document.querySelectorAll('.viewer')].map(v => v.kittyViewer ? v.kittyViewer.sample() : null)"
    )
    return samples


def _bbox(card: Any) -> list[float]:
    return [float(v) for v in (card.get_attribute("data-bbox") or "").split()]


def test_a_prompt_is_read_then_built_by_two_providers_shown_side_by_side_in_3d(
    lab: Lab, browser: Any
) -> None:
    page = _context(browser).new_page()
    _enrol(lab, page, "dana")  # an engineer: generates parts and queues prints
    page.get_by_role("link", name="CAD studio").click()
    page.wait_for_url(lab.url + "/studio")

    page.locator("#prompt").fill(PROMPT)
    reading = page.locator(".reading-spec")
    reading.wait_for(timeout=5_000)
    assert "60 × 40 × 4 mm overall" in reading.inner_text()
    assumed = page.locator(".param.assumed dt").all_inner_texts()
    assert "hole inset" in assumed and "length" not in assumed
    checked = page.locator("input[name=providers]:checked")
    assert sorted(checked.evaluate_all("b => b.map(x => x.value)")) == ["cadquery", "freecad"]
    _shot(page, "studio")

    page.get_by_role("button", name="Generate").click()
    page.wait_for_url(lab.url + "/studio/jobs/**", timeout=15_000)
    progress = page.locator("#job-progress")
    assert progress.get_attribute("data-status") in ("queued", "running", "completed")
    _finished(page)

    cards = page.locator(".result-card")
    assert cards.count() == 2
    assert {cards.nth(i).get_attribute("data-provider") for i in range(2)} == {
        "cadquery",
        "freecad",
    }
    first, second = (cards.nth(i).bounding_box() for i in range(2))
    assert first is not None and second is not None
    assert abs(first["y"] - second["y"]) < 2 and second["x"] > first["x"]  # side by side
    for i in range(2):
        card = cards.nth(i)
        assert card.locator(".viewer").get_attribute("data-state") == "drawn"
        assert _bbox(card) == pytest.approx([60, 40, 4], abs=0.05)
        facts = card.locator(".result-facts").inner_text()
        assert "requested 60 × 40 × 4 mm" in facts and "thinnest wall" in facts.lower()
        assert "Prusa" in card.locator(".result-facts").inner_text()
        assert card.locator(".score strong").inner_text() != ""
    for sample in _drawn(page):
        assert sample["part"] > 0.02, sample  # the part is on the canvas, not a blank one
        assert sample["notBackground"] > sample["part"]  # and the grid around it
    _shot(page, "studio-compare")
    STATE["page"] = page
    STATE["first"] = page.url


def test_a_follow_up_makes_a_child_job_with_a_taller_part(lab: Lab, browser: Any) -> None:
    page = STATE["page"]
    page.locator("#follow-up").fill("make it 5 mm taller")
    page.get_by_role("button", name="Iterate").click()
    page.wait_for_function(f"location.href !== {STATE['first']!r}", timeout=15_000)
    assert "/studio/jobs/" in page.url
    _finished(page)
    assert "make it 5 mm taller" in page.locator("h1").inner_text()
    for card in page.locator(".result-card").all():
        assert _bbox(card) == pytest.approx([60, 40, 9], abs=0.05)
    steps = page.locator(".lineage-step")
    assert steps.count() == 2
    assert "prompt" in steps.nth(0).inner_text().lower()
    assert "make it 5 mm taller" in steps.nth(1).inner_text()
    assert all(s["part"] > 0.02 for s in _drawn(page))


def test_send_to_printer_queues_the_part_in_one_step(lab: Lab, browser: Any) -> None:
    page = STATE["page"]
    card = page.locator('.result-card[data-provider="cadquery"]')
    card.locator("select[name=device_id]").select_option(label="Prusa")
    card.get_by_role("button", name="Send to printer").click()
    outcome = card.locator(".result .outcome.ok")
    outcome.wait_for(timeout=15_000)
    assert "Queued on Prusa" in outcome.inner_text()
    page.locator(".lineage-prints .print-link").first.wait_for(timeout=10_000)
    assert "Prusa" in page.locator(".lineage-prints").inner_text()
    jobs = page.request.get(lab.url + "/api/fabrication/jobs?limit=100").json()["items"]
    artifact = card.locator("form.send-form").get_attribute("data-artifact")
    assert any(j["cadArtifactId"] == artifact for j in jobs)
    # The picture: the part's facts, where it was sent, and the lineage under it.
    page.evaluate(
        "window.scrollBy(0, document.querySelector('.send-form').getBoundingClientRect().top - 90)"
    )
    _shot(page, "studio-iteration", top=False)
