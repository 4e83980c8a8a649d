"""KittyLab's Grafana dashboards, built with grafana-foundation-sdk (its typed builders check
each panel's shape; the JSON it writes is what Grafana imports).

    .venv/bin/python deploy/grafana/dashboards.py      # rewrites deploy/grafana/dashboards/*.json

tests/integration/test_prometheus.py checks that the committed JSON is what this file
builds, and evaluates every panel's query in a real Prometheus scraping a live server.
Import into Grafana: Dashboards → New → Import, upload the JSON, pick your Prometheus as
the data source (the dashboards ask for one through their ``datasource`` variable).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

OUT = Path(__file__).parent / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "[$__rate_interval]"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"
    width: int = 12


def _build_panel(panel: Panel) -> timeseries.Panel | stat.Panel:
    built: timeseries.Panel | stat.Panel = (
        stat.Panel() if panel.kind == "stat" else timeseries.Panel()
    )
    built = (
        built.title(panel.title)
        .description(panel.description)
        .datasource(DATASOURCE)
        .unit(panel.unit)
        .span(panel.width)
        .height(8)
    )
    for ref, query in zip("ABCDEFGH", panel.queries, strict=False):
        target = prometheus.Dataquery().expr(query.expr).ref_id(ref)
        if query.legend:
            target = target.legend_format(query.legend)
        built = built.with_target(target)
    return built


def _dashboard(uid: str, title: str, description: str, rows: dict[str, list[Panel]]) -> str:
    board = (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["kittylab"])
        .refresh("30s")
        .time("now-6h", "now")
        .with_variable(dash.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    )
    for row, panels in rows.items():
        board = board.with_row(dash.Row(row))
        for panel in panels:
            board = board.with_panel(_build_panel(panel))
    return json.dumps(board.build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


LAB_FLOOR: dict[str, list[Panel]] = {
    "Devices": [
        Panel(
            "Devices by state",
            "Devices in service by online state (offline and fault refuse commands).",
            (Query("sum by (state) (kittylab_devices)", "{{state}}"),),
            kind="stat",
            width=8,
        ),
        Panel(
            "Devices not online, by kind",
            "Offline or in fault, per device kind.",
            (Query('sum by (kind) (kittylab_devices{state!="online"})', "{{kind}}"),),
            width=16,
        ),
        Panel(
            "Device commands by outcome",
            "Commands decided per second: acked by the device's state, failed, expired "
            "before they could be sent, or refused at the last-moment re-check (a lock, a "
            "retired device).",
            (
                Query(
                    f"sum by (outcome) (rate(kittylab_device_commands_total{RATE}))",
                    "{{outcome}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Time for a device to confirm a command",
            "From sending a command to the device's state confirming it.",
            (
                Query(
                    "histogram_quantile(0.5, sum by (le) "
                    f"(rate(kittylab_device_command_confirm_seconds_bucket{RATE})))",
                    "p50",
                ),
                Query(
                    "histogram_quantile(0.95, sum by (le) "
                    f"(rate(kittylab_device_command_confirm_seconds_bucket{RATE})))",
                    "p95",
                ),
            ),
            unit="s",
        ),
        Panel(
            "Telemetry by outcome",
            "Device reports stored or refused (bad values, unknown devices, a full buffer).",
            (
                Query(
                    f"sum by (outcome) (rate(kittylab_telemetry_events_total{RATE}))",
                    "{{outcome}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "MQTT broker connection",
            "1 while the server is connected to the bus.",
            (Query("min(kittylab_mqtt_connected)", "connected"),),
            kind="stat",
        ),
    ],
    "Service": [
        Panel(
            "HTTP requests by status",
            "API requests per second by status code.",
            (
                Query(
                    f"sum by (status) (rate(kittylab_http_requests_total{RATE}))",
                    "{{status}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "HTTP latency p95 by route",
            "The slowest routes first.",
            (
                Query(
                    "topk(5, histogram_quantile(0.95, sum by (route, le) "
                    f"(rate(kittylab_http_request_duration_seconds_bucket{RATE}))))",
                    "{{route}}",
                ),
            ),
            unit="s",
        ),
        Panel(
            "Background jobs waiting and running",
            "procrastinate jobs by queue and status.",
            (Query("sum by (queue, status) (kittylab_job_queue_depth)", "{{queue}} {{status}}"),),
        ),
        Panel(
            "Oldest waiting job",
            "How long the oldest job that is due has waited, by queue.",
            (Query("max by (queue) (kittylab_job_oldest_waiting_seconds)", "{{queue}}"),),
            unit="s",
        ),
        Panel(
            "Notifications by outcome",
            "Delivery attempts: sent, to be retried, failed for good.",
            (
                Query(
                    f"sum by (outcome) (increase(kittylab_notifications_total{RATE}))",
                    "{{outcome}}",
                ),
            ),
        ),
        Panel(
            "Audit chain",
            "1 when the last verification found the hash chain intact; entries verified.",
            (
                Query("min(kittylab_audit_chain_intact)", "intact"),
                Query("max(kittylab_audit_chain_entries)", "entries"),
            ),
            kind="stat",
        ),
    ],
}

CONVERSATION: dict[str, list[Panel]] = {
    "Routing": [
        Panel(
            "Turns by answering tier",
            "Conversation turns per second by the tier that answered (local, mcp, frontier).",
            (
                Query(
                    f"sum by (tier) (rate(kittylab_query_requests_total{RATE}))",
                    "{{tier}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Latency p95 by tier",
            "How long a turn takes, by the tier that answered.",
            (
                Query(
                    "histogram_quantile(0.95, sum by (tier, le) "
                    f"(rate(kittylab_query_latency_seconds_bucket{RATE})))",
                    "{{tier}}",
                ),
            ),
            unit="s",
        ),
        Panel(
            "Model spend today against the budget",
            "Estimated spend since midnight, all people together, and each person's daily budget.",
            (
                Query("max(kittylab_routing_spend_today_usd)", "spent today"),
                Query("max(kittylab_routing_daily_budget_usd)", "budget per person"),
            ),
            unit="currencyUSD",
        ),
        Panel(
            "Spend by tier",
            "Model spend per hour by tier.",
            (Query("sum by (tier) (increase(kittylab_query_cost_usd_total[1h]))", "{{tier}}"),),
            unit="currencyUSD",
        ),
        Panel(
            "People at their budget",
            "Their escalations are refused until midnight.",
            (Query("max(kittylab_routing_people_at_budget)", "people"),),
            kind="stat",
        ),
    ],
}


def build() -> dict[str, str]:
    """File name → dashboard JSON."""
    return {
        "kittylab-lab.json": _dashboard(
            "kittylab-lab",
            "KittyLab: the lab",
            "Devices, commands, telemetry, the API, background jobs, notifications and the "
            "audit chain of one KittyLab server.",
            LAB_FLOOR,
        ),
        "kittylab-conversation.json": _dashboard(
            "kittylab-conversation",
            "KittyLab: conversation and routing",
            "Which tier answers, how fast, and what the model tiers cost against the budget.",
            CONVERSATION,
        ),
    }


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, content in build().items():
        (OUT / name).write_text(content)
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
