"""The operations view in a real browser (issue 18, item 2), on the shared console lab
(``console_lab.py``): after some traffic — questions and requests through the query API,
a light switched — the routing, latency, spend and command charts draw with data (their
canvases sampled), the tiles and tables show the traffic, and the decisions list filters
by tier."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.console_lab import Lab, _context, _enrol, _shot, needs_chromium

pytest.importorskip("playwright.sync_api")
pytestmark = needs_chromium

TRAFFIC = (
    "turn on the farm lights",
    "what is the temperature in the print farm",
    "turn off the farm lights",
    "is the prusa printing",
    "turn on the farm lights",
)

# The share of a chart's canvas that is not its background: axes, grid and series.
INK = """(figure) => {
  const canvas = figure.querySelector('canvas');
  const g = canvas.getContext('2d');
  const { data } = g.getImageData(0, 0, canvas.width, canvas.height);
  let inked = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) inked += 1;
  return inked / (canvas.width * canvas.height);
}"""


def test_the_charts_draw_the_traffic_and_the_decisions_filter(lab: Lab, browser: Any) -> None:
    page = _context(browser).new_page()
    _enrol(lab, page, "owen")  # an operator: sees their own routing, the lab's queues
    statuses = page.evaluate(
        """async (texts) => {
          const csrf = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token'];
          const codes = [];
          for (const text of texts) {
            const r = await fetch('/api/query', {method: 'POST', headers: {'Content-Type':
              'application/json', 'X-CSRF-Token': csrf}, body: JSON.stringify({channel: 'ipad',
              input: {text}})});
            codes.push(r.status);
          }
          return codes;
        }""",
        list(TRAFFIC),
    )
    assert statuses == [200] * len(TRAFFIC)

    page.get_by_role("link", name="Operations").click()
    page.wait_for_url(lab.url + "/operations")
    page.wait_for_function(
        "() => [...document.querySelectorAll('figure.chart')].every(f => f.dataset.drawn)",
        timeout=10_000,
    )
    drawn = {
        f.get_attribute("data-chart"): f.get_attribute("data-drawn")
        for f in page.locator("figure.chart").all()
    }
    assert drawn["local"] == drawn["latency"] == drawn["spend"] == drawn["commands"] == "data"
    for name in ("local", "latency", "spend", "commands"):
        figure = page.locator(f'figure.chart[data-chart="{name}"]')
        assert figure.locator(".u-legend").count() == 1
        assert figure.evaluate(INK) > 0.01, name

    tiles = page.locator(".ops-tiles").inner_text()
    assert f"of {len(TRAFFIC)} requests" in tiles
    assert "routing figures are your own" in page.locator(".ops-head").inner_text()
    rows = page.locator("#decisions tbody tr")
    assert rows.count() == len(TRAFFIC)
    assert "owen" in rows.first.inner_text()

    page.locator(".ops-filters select[name=tier]").select_option("frontier")
    page.wait_for_function(
        "() => document.querySelector('#decisions').innerText.includes('No decision passes')",
        timeout=5_000,
    )
    page.locator(".ops-filters select[name=tier]").select_option("local")
    page.wait_for_function(
        f"() => document.querySelectorAll('#decisions tr.tier-local').length === {len(TRAFFIC)}",
        timeout=5_000,
    )
    _shot(page, "operations")
