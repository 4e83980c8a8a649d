// KittyLab console, the operations view: draws the page's per-day series (the JSON in
// #ops-data, computed by the server from SQL aggregates) with uPlot, sized to their
// boxes and redrawn when those change size. Colours come from the page's theme; every
// series also differs by its dash or its points, so colour is never the only signal.
"use strict";

(function () {
  const source = document.getElementById("ops-data");
  if (!source || !window.uPlot) return;
  const data = JSON.parse(source.textContent);
  const style = getComputedStyle(document.documentElement);
  function css(name, fallback) { return style.getPropertyValue(name).trim() || fallback; }
  const ink = css("--muted", "#4a5260");
  const grid = css("--line", "#c9ced6");
  const colours = [css("--accent", "#0b5cad"), css("--ok", "#116b2f"), css("--warn", "#8a5300"), css("--bad", "#a3161b"), css("--ink", "#14171c")];
  // a tier keeps its colour on every chart; red is kept for what went wrong
  const tierColour = { local: 0, mcp: 1, frontier: 2, cache: 4 };
  const dashes = [[], [8, 5], [2, 4], [12, 4, 2, 4]];
  const days = data.days;

  function axes(unit) {
    return [
      // one tick per day at most: the series are daily
      { stroke: ink, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, space: 44,
        incrs: [86400, 2 * 86400, 7 * 86400, 30 * 86400], values: "{M}/{D}" },
      { stroke: ink, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, label: unit, size: 60 },
    ];
  }
  // half a day of room at each end, so the first and last day's bars are whole
  const dayRange = { time: true, range: function (u, min, max) { return [min - 43200, max + 43200]; } };

  function line(label, i, extra) {
    return Object.assign({ label: label, stroke: colours[i % colours.length], width: 2.5, dash: dashes[i % dashes.length], points: { size: 7 }, spanGaps: false }, extra || {});
  }
  function bars(label, i) {
    return { label: label, stroke: colours[i], fill: colours[i] + "55", width: 2, paths: uPlot.paths.bars({ size: [0.6, 60] }), points: { show: false } };
  }
  function hasData(series) {
    return series.some(function (values) { return values.some(function (v) { return v !== null && v !== 0; }); });
  }

  const charts = {
    local: function () {
      const r = data.routing;
      return {
        unit: "%", scales: { y: { range: [0, 100] } },
        series: [line("served locally", 0), line("cache hits", 1)],
        values: [r.localShare, r.cacheHitRate],
        empty: "No requests in these days.",
      };
    },
    latency: function () {
      const r = data.routing;
      const series = [];
      const values = [];
      r.tiers.forEach(function (tier, i) {
        const colour = tier in tierColour ? tierColour[tier] : i;
        series.push(line(tier + " p50", colour, { dash: [] }));
        values.push(r.p50[tier]);
        series.push(line(tier + " p95", colour, { dash: [8, 5], width: 2 }));
        values.push(r.p95[tier]);
      });
      // logarithmic: the cache's milliseconds and the frontier's seconds on one chart
      return { unit: "ms (log)", scales: { y: { distr: 3 } }, series: series, values: values, empty: "No requests in these days." };
    },
    spend: function () {
      const s = data.spend;
      return {
        unit: "US $",
        scales: { y: { range: function (u, min, max) { return [0, Math.max(max, s.budget) * 1.15 || 1]; } } },
        series: [bars("spend, everyone", 0), line("biggest spender", 2), line("budget per person", 3, { dash: [10, 6], points: { show: false } })],
        values: [s.total, s.topPerson, days.map(function () { return s.budget; })],
        always: true,
      };
    },
    commands: function () {
      const c = data.commands;
      return {
        unit: "commands",
        series: [line("acked", 1), line("failed", 3), line("still open", 0)],
        values: [c.acked, c.failed, c.open],
        empty: "No commands in these days.",
      };
    },
    alerts: function () {
      const a = data.alerts;
      return {
        unit: "alerts",
        series: [bars("failures", 3), line("warnings", 2)],
        values: [a.failure, a.warning],
        empty: "No alerts in these days.",
      };
    },
  };

  function draw(figure) {
    const spec = charts[figure.dataset.chart]();
    const box = figure.querySelector(".plot");
    if (!spec.always && !hasData(spec.values)) {
      figure.classList.add("empty");
      box.textContent = spec.empty;
      figure.dataset.drawn = "empty";
      return;
    }
    const width = Math.max(240, box.clientWidth);
    const plot = new uPlot({
      width: width,
      height: 240,
      scales: Object.assign({ x: dayRange }, spec.scales || {}),
      axes: axes(spec.unit),
      series: [{ label: "day", value: "{YYYY}-{MM}-{DD}" }].concat(spec.series),
      legend: { live: true },
      cursor: { points: { size: 8 } },
    }, [days].concat(spec.values), box);
    figure.dataset.drawn = "data";
    new ResizeObserver(function () {
      const w = Math.max(240, box.clientWidth);
      if (Math.abs(w - plot.width) > 2) plot.setSize({ width: w, height: 240 });
    }).observe(box);
  }

  function start() {
    document.querySelectorAll("figure.chart[data-chart]").forEach(draw);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
