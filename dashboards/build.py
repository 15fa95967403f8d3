"""Generate the association's Grafana dashboards ("Fleet" and "Site") as JSON.

    .venv/bin/python dashboards/build.py          # rewrite dashboards/*.json
    .venv/bin/python dashboards/build.py --check  # exit 1 if the checked-in JSON is stale

The JSON is checked in so that it can be imported into Grafana without Python;
tests/dashboards/test_build.py regenerates it and compares. Every query reads series that
the site agent tags with `site` (its external label); see dashboards/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

HERE = Path(__file__).resolve().parent
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")

# `telecentre_link_up{layer}` is 1 while that layer and every layer below it work, so the
# sum over the four layers counts the working layers from the bottom: it names the cause.
LINE_STATE = {
    "4": ("up", "green"),
    "3": ("DNS down", "yellow"),
    "2": ("beyond the ISP", "orange"),
    "1": ("access line down", "red"),
    "0": ("box / LAN down", "dark-red"),
}
# Added delay under load, seconds: the grades of appliance/link/throughput.py.
GRADE_STEPS = [(None, "green"), (0.030, "yellow"), (0.060, "orange"), (0.200, "red"),
               (0.400, "dark-red")]

# A site is "not reporting" when it sent samples in the past week but none in 15 minutes.
# The subquery's 10-minute step keeps this cheap over a week of history.
NOT_REPORTING = (
    "group by (site) (present_over_time(up[7d:10m]))"
    " unless group by (site) (present_over_time(up[15m]))"
)


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False,
           rows: bool = False) -> prom.Dataquery:
    """A PromQL query; `instant` for one value per series, `rows` for a table panel."""
    q = prom.Dataquery().expr(expr).ref_id(ref).datasource(DS)
    if legend:
        q = q.legend_format(legend)
    if instant or rows:
        q = q.instant()
    if rows:
        q = q.format(PromQueryFormat.TABLE)
    return q


def thresholds(steps: list[tuple[float | None, str]]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=v, color=c) for v, c in steps])
    )


def _mapping(states: dict[str, tuple[str, str]]) -> list[ValueMap]:
    return [ValueMap(options={
        k: ValueMappingResult(text=text, color=color, index=i)
        for i, (k, (text, color)) in enumerate(states.items())
    })]


def ts(title: str, targets: list[prom.Dataquery], unit: str, w: int = 12, h: int = 8,
       desc: str = "", stack: bool = False) -> timeseries.Panel:
    p = (timeseries.Panel().title(title).datasource(DS).unit(unit).span(w).height(h)
         .fill_opacity(10).legend(common.VizLegendOptions().show_legend(True)
                                  .display_mode(cm.LegendDisplayMode.TABLE)
                                  .placement(cm.LegendPlacement.BOTTOM)
                                  .calcs(["lastNotNull", "max"])))
    if stack:
        p = p.stacking(common.StackingConfig().mode(cm.StackingMode.NORMAL))
    for t in targets:
        p = p.with_target(t)
    return p.description(desc) if desc else p


def bars(title: str, targets: list[prom.Dataquery], unit: str, w: int = 12, h: int = 8,
         desc: str = "", steps: list[tuple[float | None, str]] | None = None,
         max_value: float | None = None) -> bargauge.Panel:
    p = (bargauge.Panel().title(title).datasource(DS).unit(unit).span(w).height(h)
         .orientation(cm.VizOrientation.HORIZONTAL)
         .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
         .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    if steps:
        p = p.thresholds(thresholds(steps))
    if max_value is not None:
        p = p.min(0).max(max_value)
    for t in targets:
        p = p.with_target(t)
    return p.description(desc) if desc else p


def single(title: str, expr: str, unit: str = "none", w: int = 4, h: int = 5, desc: str = "",
           steps: list[tuple[float | None, str]] | None = None,
           states: dict[str, tuple[str, str]] | None = None, legend: str = "") -> stat.Panel:
    p = (stat.Panel().title(title).datasource(DS).unit(unit).span(w).height(h)
         .with_target(target(expr, legend))
         .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    if steps:
        p = p.thresholds(thresholds(steps))
    if states:
        p = p.mappings(_mapping(states))
    return p.description(desc) if desc else p


def datasource_variable() -> db.DatasourceVariable:
    return db.DatasourceVariable("datasource").label("Data source").type("prometheus")


def base(uid: str, title: str, desc: str, time_from: str) -> db.Dashboard:
    return (
        db.Dashboard(title).uid(uid).description(desc).tags(["telecentre"])
        .editable().timezone("browser").refresh("1m").time(time_from, "now")
        .with_variable(datasource_variable())
    )


def fleet() -> db.Dashboard:
    """Every site at once; the default range is this calendar month."""
    d = base(
        "telecentre-fleet", "Telecentres: Fleet",
        "Every site: line state, ISP delivery against the contract, availability, outages "
        "by cause, door activity, Wi-Fi use by class, sites not reporting.",
        "now/M",
    )
    r = "$__range"
    d = d.with_row(db.Row("Now"))
    d = d.with_panel(
        table.Panel().title("Sites not reporting").datasource(DS).span(6).height(8)
        .description("Sent samples in the last 7 days but none in the last 15 minutes. "
                     "Their buffered samples arrive when the line comes back.")
        .with_target(target(NOT_REPORTING, rows=True))
        .no_value("every site is reporting")
    )
    d = d.with_panel(
        bars("Line state", [target("sum by (site) (telecentre_link_up)", "{{site}}",
                                   instant=True)],
             "none", w=9, h=8,
             desc="The lowest layer that is down: box/LAN, access line, beyond the ISP, DNS.")
        .mappings(_mapping(LINE_STATE))
        .min(0).max(4)
        .thresholds(thresholds([(None, "dark-red"), (1, "red"), (2, "orange"), (3, "yellow"),
                                (4, "green")]))
    )
    d = d.with_panel(bars(
        "Measured / contracted (last test)",
        [target("min by (site) (telecentre_link_download_contract_ratio)", "{{site}} down",
                instant=True),
         target("min by (site) (telecentre_link_upload_contract_ratio)", "{{site}} up", "B",
                instant=True)],
        "percentunit", w=9, h=8, steps=[(None, "red"), (0.5, "orange"), (0.8, "green")],
        max_value=1.2,
    ))
    d = d.with_row(db.Row("This month (the dashboard's range)"))
    d = d.with_panel(bars(
        "Availability",
        [target(f"1 - sum by (site) (increase(telecentre_link_outage_seconds_total[{r}]))"
                " / $__range_s", "{{site}}", instant=True)],
        "percentunit", w=8, h=10, steps=[(None, "red"), (0.99, "orange"), (0.999, "green")],
        max_value=1,
        desc="1 − outage seconds (every cause) over the range. The counter is cumulative, "
             "so the total is right even when samples were lost.",
    ))
    d = d.with_panel(bars(
        "Outage minutes by cause",
        [target(f"sum by (site, cause) (increase(telecentre_link_outage_seconds_total[{r}]))"
                " / 60 > 0", "{{site}} {{cause}}", instant=True)],
        "m", w=8, h=10,
    ))
    d = d.with_panel(bars(
        "Bufferbloat: added delay in the last test",
        [target("max by (site) (telecentre_link_added_delay_seconds)", "{{site}}",
                instant=True)],
        "s", w=8, h=10, steps=GRADE_STEPS,
        desc="Grades: A+ < 5 ms, A < 30, B < 60, C < 200, D < 400, F ≥ 400 ms.",
    ))
    d = d.with_panel(bars(
        "Door: decisions",
        [target(f"sum by (site, result) (increase(telecentre_door_decisions_total[{r}]))",
                "{{site}} {{result}}", instant=True)],
        "none", w=8, h=10,
    ))
    d = d.with_panel(bars(
        "Door: alarms",
        [target(f"sum by (site, kind) (increase(telecentre_door_alarms_total[{r}]))",
                "{{site}} {{kind}}", instant=True)],
        "none", w=8, h=10, steps=[(None, "green"), (1, "red")],
    ))
    d = d.with_panel(bars(
        "Wi-Fi: bytes by class",
        [target(f"sum by (site, class) (increase(telecentre_wifi_bytes_total[{r}]))",
                "{{site}} {{class}}", instant=True)],
        "decbytes", w=8, h=10,
    ))
    d = d.with_row(db.Row("Over time"))
    d = d.with_panel(ts(
        "Download rate (last test) by site",
        [target("max by (site) (telecentre_link_download_bytes_per_second)", "{{site}}")],
        "Bps",
    ))
    d = d.with_panel(ts(
        "Wi-Fi devices by class",
        [target("sum by (site, class) (telecentre_wifi_devices)", "{{site}} {{class}}")],
        "none", stack=True,
    ))
    return d


def site() -> db.Dashboard:
    """One site, chosen with the `site` variable."""
    d = base(
        "telecentre-site", "Telecentres: Site",
        "One site: the line by layer, ISP delivery, latency and loss, outages, door, "
        "Wi-Fi and panel.",
        "now-7d",
    )
    d = d.with_variable(
        db.QueryVariable("site").label("Site").datasource(DS)
        .query("label_values(up, site)").refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )
    s = 'site="$site"'
    r = "$__range"
    ri = "$__rate_interval"
    d = d.with_row(db.Row("Line"))
    d = d.with_panel(single("Line", f"sum(telecentre_link_up{{{s}}})", states=LINE_STATE))
    d = d.with_panel(single(
        "Availability (range)",
        f"1 - sum(increase(telecentre_link_outage_seconds_total{{{s}}}[{r}])) / $__range_s",
        "percentunit", steps=[(None, "red"), (0.99, "orange"), (0.999, "green")],
    ))
    d = d.with_panel(single(
        "Download / contract", f"telecentre_link_download_contract_ratio{{{s}}}",
        "percentunit", w=3, steps=[(None, "red"), (0.5, "orange"), (0.8, "green")],
    ))
    d = d.with_panel(single(
        "Upload / contract", f"telecentre_link_upload_contract_ratio{{{s}}}",
        "percentunit", w=3, steps=[(None, "red"), (0.5, "orange"), (0.8, "green")],
    ))
    d = d.with_panel(single(
        "Tests under half the contract in a row",
        f"max by (direction) (telecentre_link_tests_below_half_contract_in_a_row{{{s}}})",
        w=3, legend="{{direction}}", steps=[(None, "green"), (1, "orange"), (3, "red")],
        desc="Completed tests in a row under 50 % of the contract; the alert fires at 3.",
    ))
    d = d.with_panel(single(
        "Added delay (grade)", f"telecentre_link_added_delay_seconds{{{s}}}", "s",
        steps=GRADE_STEPS,
    ))
    d = d.with_panel(single(
        "Test budget used", f"telecentre_link_test_budget_used_bytes{{{s}}}"
        f" / telecentre_link_test_budget_bytes{{{s}}}", "percentunit", w=3,
        steps=[(None, "green"), (0.8, "orange"), (1, "red")],
    ))
    d = d.with_panel(
        statetimeline.Panel().title("Layers").datasource(DS).span(24).height(6)
        .with_target(target(f"telecentre_link_up{{{s}}}", "{{layer}}"))
        .mappings(_mapping({"1": ("up", "green"), "0": ("down", "red")}))
    )
    d = d.with_panel(ts("Throughput against the contract", [
        target(f"telecentre_link_download_bytes_per_second{{{s}}}", "download"),
        target(f"telecentre_link_contracted_download_bytes_per_second{{{s}}}",
               "download (contract)", "B"),
        target(f"telecentre_link_upload_bytes_per_second{{{s}}}", "upload", "C"),
        target(f"telecentre_link_contracted_upload_bytes_per_second{{{s}}}",
               "upload (contract)", "D"),
    ], "Bps"))
    d = d.with_panel(ts("RTT p95 by target", [
        target("histogram_quantile(0.95, sum by (role, le) "
               f"(rate(telecentre_link_rtt_seconds_bucket{{{s}}}[{ri}])))", "{{role}}"),
        target("histogram_quantile(0.95, sum by (le) "
               f"(rate(telecentre_link_dns_resolution_seconds_bucket{{{s}}}[{ri}])))",
               "DNS resolution", "B"),
    ], "s"))
    d = d.with_panel(ts("Loss by target", [
        target(f"telecentre_link_loss_ratio{{{s}}}", "{{role}}"),
    ], "percentunit"))
    d = d.with_panel(ts("Jitter by target", [
        target(f"telecentre_link_jitter_seconds{{{s}}}", "{{role}}"),
    ], "s"))
    d = d.with_panel(bars("Outage minutes by cause (range)", [
        target(f"sum by (cause) (increase(telecentre_link_outage_seconds_total{{{s}}}[{r}]))"
               " / 60", "{{cause}}", instant=True),
    ], "m", w=8))
    d = d.with_panel(bars("Throughput tests by result (range)", [
        target(f"sum by (result) (increase(telecentre_link_tests_total{{{s}}}[{r}]))",
               "{{result}}", instant=True),
    ], "none", w=8))
    d = d.with_panel(bars("Line monitor traffic (range)", [
        target(f"sum(increase(telecentre_link_test_bytes_total{{{s}}}[{r}]))", "tests",
               instant=True),
        target(f"sum(increase(telecentre_link_probe_bytes_total{{{s}}}[{r}]))", "probes", "B",
               instant=True),
    ], "decbytes", w=8))

    d = d.with_row(db.Row("Door"))
    d = d.with_panel(single("Door open", f"telecentre_door_open{{{s}}}",
                            states={"1": ("open", "orange"), "0": ("closed", "green")}))
    d = d.with_panel(single("Lock", f"telecentre_door_locked{{{s}}}",
                            states={"1": ("locked", "green"), "0": ("unlocked", "orange")}))
    d = d.with_panel(single("Badge reader", f"telecentre_door_reader_up{{{s}}}",
                            states={"1": ("answers", "green"), "0": ("down", "red")}))
    d = d.with_panel(single("Alarms active", f"sum(telecentre_door_alarm_active{{{s}}})",
                            steps=[(None, "green"), (1, "red")]))
    d = d.with_panel(single(
        "Reader errors (range)",
        f"sum(increase(telecentre_door_reader_errors_total{{{s}}}[{r}]))",
        steps=[(None, "green"), (1, "orange")],
    ))
    d = d.with_panel(single(
        "Unsaved access events", f"telecentre_door_events_unsaved{{{s}}}",
        steps=[(None, "green"), (1, "red")],
    ))
    d = d.with_panel(ts("Access decisions", [
        target(f"sum by (result, reason) (increase(telecentre_door_decisions_total{{{s}}}"
               "[$__interval]))", "{{result}} {{reason}}"),
    ], "none", stack=True))
    d = d.with_panel(ts("Decision time p95 (card read → lock driven)", [
        target("histogram_quantile(0.95, sum by (le) "
               f"(rate(telecentre_door_decision_seconds_bucket{{{s}}}[{ri}])))", "p95"),
    ], "s"))

    d = d.with_row(db.Row("Wi-Fi"))
    d = d.with_panel(ts("Devices by class", [
        target(f"sum by (class) (telecentre_wifi_devices{{{s}}})", "{{class}}"),
    ], "none", w=8, stack=True))
    d = d.with_panel(ts("Traffic by class", [
        target(f"sum by (class) (rate(telecentre_wifi_bytes_total{{{s}}}[{ri}]))", "{{class}}"),
    ], "Bps", w=8, stack=True))
    d = d.with_panel(ts("Quotas spent today by class", [
        target(f"sum by (class) (telecentre_wifi_quotas_exhausted{{{s}}})", "{{class}}"),
    ], "none", w=8))
    d = d.with_panel(ts("Portal logins by class and result", [
        target(f"sum by (class, result) (increase(telecentre_portal_logins_total{{{s}}}"
               "[$__interval]))", "{{class}} {{result}}"),
    ], "none", w=12, stack=True))
    d = d.with_panel(ts("Portal login to internet, p95", [
        target("histogram_quantile(0.95, sum by (le) "
               f"(rate(telecentre_portal_authorize_seconds_bucket{{{s}}}[{ri}])))", "p95"),
    ], "s", w=12, desc="From a portal login's request to the gateway's rules in place "
                       "(the issue's target: under 1 s)."))
    d = d.with_panel(bars("Gateway: changes refused (range)", [
        target(f"sum(increase(telecentre_wifi_{name}_total{{{s}}}[{r}]))", legend, ref,
               instant=True)
        for name, legend, ref in (
            ("nft_errors", "firewall (logins, kicks, quotas)", "A"),
            ("tc_errors", "shaping", "B"),
            ("neighbour_errors", "IP–MAC pins", "C"),
            ("presence_probe_errors", "presence rounds", "D"),
        )
    ], "none", w=24, h=6, steps=[(None, "green"), (1, "red")],
        desc="Should stay at 0. Firewall or shaping errors raise the WifiChangesRefused or "
             "WifiUnshaped alert; the gateway's log says what (no address in it)."))

    d = d.with_row(db.Row("Panel and agent"))
    d = d.with_panel(ts("Panel requests by status", [
        target(f"sum by (status) (rate(telecentre_web_requests_total{{{s}}}[{ri}]))",
               "{{status}}"),
    ], "reqps", w=8))
    d = d.with_panel(ts("Panel logins by result", [
        target(f"sum by (result) (increase(telecentre_web_login_attempts_total{{{s}}}"
               "[$__interval]))", "{{result}}"),
    ], "none", w=8))
    d = d.with_panel(ts("Services scraped", [
        target(f"up{{{s}}}", "{{job}}"),
    ], "none", w=8))
    d = d.with_panel(ts("Agent backlog (newest sample − newest sent)", [
        target("max by (site) (prometheus_remote_storage_highest_timestamp_in_seconds"
               f"{{{s}}}) - max by (site) "
               f"(prometheus_remote_storage_queue_highest_sent_timestamp_seconds{{{s}}})",
               "backlog"),
    ], "s", w=24, h=6,
        desc="Grows while the line or the central store is down; it arrives late itself."))
    return d


DASHBOARDS: dict[str, Callable[[], db.Dashboard]] = {"fleet.json": fleet, "site.json": site}


def render(build: Callable[[], db.Dashboard]) -> str:
    """The dashboard as stable, sorted JSON (what is checked in)."""
    return json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True,
                      ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--out", type=Path, default=HERE, help="output directory")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = args.out / name
        text = render(build)
        if args.check:
            if not path.exists() or path.read_text("utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, "utf-8")
    if stale:
        print(f"stale: {', '.join(stale)}; run dashboards/build.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
