"""The self-contained HTML report: scorecard, funnel, cohorts, daily activity, liability, referrers.

One file with inline CSS and inline SVG charts drawn here in Python: no scripts, external
styles, fonts or network, so it opens anywhere and can be mailed or archived as it is.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from refstream.reports.definitions import (
    ALL_SHOPS,
    NO_PAYOUTS_NOTE,
    SCORECARD,
    STATUS_ABOVE_HEALTHY,
    STATUS_ALERT,
    STATUS_BELOW_HEALTHY,
    STATUS_BELOW_MEDIAN,
    STATUS_HEALTHY,
    STATUS_INFO,
    STATUS_MEDIAN,
    STATUS_NO_DATA,
    STATUS_TOP_QUARTILE,
)
from refstream.reports.results import (
    KpiResult,
    ReportResult,
    format_measure,
    format_money,
    format_percent,
    payouts_recorded,
    run_report,
    scorecard,
)
from refstream.schemas.status import PAID, RewardStatusName

# The six KPIs the scorecard rates; the headline cards show them first.
HEADLINE_KPIS = ("share-rate", "referral-conversion", "referral-rate", "clv-premium",
                 "revenue-share", "k-factor")
# How many rows of long tables the report shows; the CLI reports have them all.
TABLE_ROW_LIMIT = 20
MAX_COHORT_LINES = 8
REFERRERS_SHOWN = 10

CHART_WIDTH = 760
CHART_HEIGHT = 300
LEGEND_WIDTH = 140
# The liability chart sits in a half-width column, so it is drawn narrower.
LIABILITY_WIDTH = 480
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 24, 20, 44
TICK_TARGET = 5
TICK_DIGITS = 12

INK = "#1f2933"
MUTED = "#7b8794"
GRID = "#e4e7eb"
SERIES = ("#2f6fdf", "#e8833a", "#2a9d8f", "#c2185b", "#7e57c2", "#8d6e63", "#546e7a",
          "#c0ca33")
STATUS_COLOURS: dict[str, str] = {
    STATUS_ALERT: "#d64545",
    STATUS_BELOW_MEDIAN: "#e8833a",
    STATUS_MEDIAN: "#2f6fdf",
    STATUS_TOP_QUARTILE: "#1e9e5a",
    STATUS_HEALTHY: "#1e9e5a",
    STATUS_BELOW_HEALTHY: "#e8833a",
    STATUS_ABOVE_HEALTHY: "#2a9d8f",
    STATUS_INFO: "#7b8794",
    STATUS_NO_DATA: "#b0b8c1",
}

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f5f7fa; color: #1f2933;
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial,
             sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 48px; }
header h1 { font-size: 26px; margin: 0 0 4px; }
header p { margin: 0; color: #52606d; }
section { background: #fff; border: 1px solid #e4e7eb; border-radius: 10px;
          padding: 18px 20px; margin-top: 20px; }
section h2 { font-size: 17px; margin: 0 0 4px; }
section p.lead { margin: 0 0 12px; color: #52606d; font-size: 13px; }
.cards { display: grid; grid-template-columns: repeat(3, 1fr); gap: 14px; }
.cards.small { grid-template-columns: repeat(4, 1fr); margin-top: 14px; }
.card { border: 1px solid #e4e7eb; border-left: 5px solid var(--status); border-radius: 8px;
        padding: 12px 14px; background: #fff; }
.card h3 { margin: 0; font-size: 13px; font-weight: 600; color: #52606d; }
.card .value { font-size: 28px; font-weight: 700; margin: 4px 0 2px;
               font-variant-numeric: tabular-nums; }
.card .value small { font-size: 13px; font-weight: 500; color: #7b8794; }
.card .value .pill { vertical-align: middle; }
.card .bench, .card .def { font-size: 12px; color: #7b8794; margin: 2px 0 0; }
.pill { display: inline-block; padding: 1px 9px; border-radius: 999px; color: #fff;
        font-size: 12px; font-weight: 600; background: var(--status); white-space: nowrap; }
table { width: 100%; border-collapse: collapse; font-size: 13px;
        font-variant-numeric: tabular-nums; }
th { text-align: left; color: #52606d; font-weight: 600; border-bottom: 2px solid #e4e7eb;
     padding: 6px 8px; }
td { border-bottom: 1px solid #f0f2f5; padding: 5px 8px; vertical-align: top;
     white-space: nowrap; }
td.wrap { white-space: normal; overflow-wrap: anywhere; min-width: 150px; }
#table-scorecard td, #table-scorecard th { padding: 5px 5px; font-size: 12px; }
#table-scorecard td.num { white-space: normal; }
#table-scorecard td.wrap { min-width: 90px; }
#table-scorecard td.bench { color: #52606d; font-size: 12px; }
ul.evidence { margin: 0; padding-left: 16px; }
code.id { font-size: 11px; color: #7b8794; }
.scroll { overflow-x: auto; }
td.num, th.num { text-align: right; }
tr.total td { font-weight: 600; background: #f9fafb; }
.chart { width: 100%; height: auto; display: block; }
.chart text { font-family: inherit; }
.note { color: #9a3412; background: #fff7ed; border: 1px solid #fed7aa; border-radius: 6px;
        padding: 6px 10px; font-size: 13px; margin-top: 8px; }
.two { display: grid; grid-template-columns: 1fr 1fr; gap: 20px; }
dl { display: grid; grid-template-columns: 210px 1fr; gap: 4px 14px; margin: 0;
     font-size: 13px; }
dt { font-weight: 600; } dd { margin: 0; color: #52606d; }
code { font-size: 12px; background: #f0f2f5; padding: 1px 4px; border-radius: 4px; }
footer { color: #7b8794; font-size: 12px; margin-top: 24px; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


# ------------------------------------------------------------------------------- chart kit


@dataclass(frozen=True)
class Plot:
    """The drawing area of a chart inside its viewBox, and the y scale."""

    width: int
    height: int
    y_max: float

    @property
    def left(self) -> int:
        return MARGIN_LEFT

    @property
    def right(self) -> int:
        return self.width - MARGIN_RIGHT

    @property
    def top(self) -> int:
        return MARGIN_TOP

    @property
    def bottom(self) -> int:
        return self.height - MARGIN_BOTTOM

    def y(self, value: float) -> float:
        span = self.bottom - self.top
        return self.bottom - (value / self.y_max) * span if self.y_max else self.bottom


def nice_ticks(maximum: float, target: int = TICK_TARGET) -> list[float]:
    """Round tick values from 0 to at least `maximum` (1, 2 or 5 times a power of ten)."""
    if maximum <= 0:
        return [0.0, 1.0]
    raw = maximum / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    count = math.ceil(maximum / step - 1e-9)
    # Rounded so 3 x 0.1 prints as 0.3, not 0.30000000000000004.
    return [round(i * step, TICK_DIGITS) for i in range(count + 1)]


def _svg_open(chart_id: str, label: str, width: int = CHART_WIDTH,
              height: int = CHART_HEIGHT) -> str:
    return (f'<svg id="{chart_id}" class="chart" xmlns="http://www.w3.org/2000/svg" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(label)}">'
            f"<title>{_e(label)}</title>")


def _y_axis(plot: Plot, ticks: Sequence[float], fmt: str) -> str:
    parts = []
    for tick in ticks:
        y = plot.y(tick)
        text = f"{tick:.0%}" if fmt == "percent" else f"{tick:,.0f}"
        parts.append(f'<line x1="{plot.left}" x2="{plot.right}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="{GRID}"/>'
                     f'<text x="{plot.left - 8}" y="{y + 4:.1f}" text-anchor="end" '
                     f'font-size="11" fill="{MUTED}">{text}</text>')
    return "".join(parts)


def _legend(items: Sequence[tuple[str, str, bool]], x: float, y: float) -> str:
    """(label, colour, is_line) entries in one row, starting at x."""
    parts, cursor = [], x
    for label, colour, is_line in items:
        mark = (f'<line x1="{cursor:.1f}" x2="{cursor + 16:.1f}" y1="{y - 4:.1f}" '
                f'y2="{y - 4:.1f}" stroke="{colour}" stroke-width="3"/>' if is_line else
                f'<rect x="{cursor:.1f}" y="{y - 10:.1f}" width="12" height="12" rx="2" '
                f'fill="{colour}"/>')
        parts.append(mark + f'<text x="{cursor + 20:.1f}" y="{y:.1f}" font-size="12" '
                            f'fill="{INK}">{_e(label)}</text>')
        cursor += 30 + 7 * len(label)
    return f'<g class="legend">{"".join(parts)}</g>'


def _empty(chart_id: str, label: str, message: str) -> str:
    return (_svg_open(chart_id, label, height=120) +
            f'<text class="empty" x="{CHART_WIDTH / 2}" y="64" text-anchor="middle" '
            f'font-size="14" fill="{MUTED}">{_e(message)}</text></svg>')


# ------------------------------------------------------------------------------- charts


def funnel_svg(funnel: ReportResult) -> str:
    """Horizontal bars from referral clicks to paid, for all shops; labels carry the
    step-to-step rate. Shares head the chart as a line of text, not a bar: one share brings
    several clicks, and a click bar several times the share bar would not read as a funnel."""
    label = "Referral funnel, all shops"
    steps = [r for r in funnel.records() if r["shop_id"] == ALL_SHOPS]
    top = max((r["count"] for r in steps), default=0)
    if not steps or top == 0:
        return _empty("chart-funnel", label, "no funnel activity recorded yet")
    shares, bars = (steps[0], steps[1:]) if steps[0]["step"] == "share" else (None, steps)
    top = max((r["count"] for r in bars), default=0) or 1
    label_width, bar_height, gap, head = 110, 28, 10, 26 if shares is not None else 0
    height = MARGIN_TOP + head + len(bars) * (bar_height + gap) + 10
    # Room right of the longest bar for "194,149 · 36.18% of previous".
    usable = CHART_WIDTH - label_width - 250
    parts = [_svg_open("chart-funnel", label, height=height)]
    if shares is not None:
        per_share = ("" if not shares["count"] else
                     f" ({bars[0]['count'] / shares['count']:.1f} clicks per share)")
        parts.append(
            f'<text class="funnel-shares" data-step="share" x="{label_width}" '
            f'y="{MARGIN_TOP + 12}" font-size="13" fill="{INK}"><tspan font-weight="700">'
            f'{shares["count"]:,}</tspan> shares brought <tspan font-weight="700">'
            f'{bars[0]["count"]:,}</tspan> referral clicks{_e(per_share)}</text>')
    for i, step in enumerate(bars):
        y = MARGIN_TOP + head + i * (bar_height + gap)
        width = max(usable * step["count"] / top, 2.0)
        colour = SERIES[0] if i < len(bars) - 1 else SERIES[2]
        rate = ("" if step["from_previous"] is None or i == 0
                else f' · {format_percent(step["from_previous"])} of previous')
        parts.append(
            f'<g class="funnel-step" data-step="{_e(step["step"])}">'
            f'<text x="{label_width - 10}" y="{y + bar_height / 2 + 4:.1f}" text-anchor="end" '
            f'font-size="13" fill="{INK}">{_e(step["step"])}</text>'
            f'<rect class="bar" x="{label_width}" y="{y}" width="{width:.1f}" '
            f'height="{bar_height}" rx="4" fill="{colour}" opacity="{1 - i * 0.08:.2f}">'
            f'<title>{_e(step["step"])}: {step["count"]:,}{_e(rate)}</title></rect>'
            f'<text x="{label_width + width + 8:.1f}" y="{y + bar_height / 2 + 4:.1f}" '
            f'font-size="12" fill="{INK}"><tspan font-weight="700">{step["count"]:,}</tspan>'
            f'<tspan fill="{MUTED}">{_e(rate)}</tspan></text></g>')
    parts.append("</svg>")
    return "".join(parts)


def cohorts_svg(cohorts: ReportResult) -> str:
    """Cumulative conversion by weeks since first click, one line per ISO-week cohort.

    Solid while the cohort is complete (observed long enough), dashed where still maturing.
    """
    label = "Conversion of referred visitors by weeks since first click, per cohort"
    curves: dict[str, list[dict[str, Any]]] = defaultdict(list)
    sizes: dict[str, int] = {}
    for record in cohorts.records():
        if record["shop_id"] == ALL_SHOPS:
            curves[record["cohort_week"]].append(record)
            sizes[record["cohort_week"]] = record["visitors"]
    if not curves:
        return _empty("chart-cohorts", label, "no referred visitors yet")
    weeks = sorted(curves)[-MAX_COHORT_LINES:]
    max_week = max(p["weeks_since_first_click"] for w in weeks for p in curves[w])
    peak = max(p["conversion"] for w in weeks for p in curves[w])
    ticks = nice_ticks(max(peak, 0.01))
    plot = Plot(CHART_WIDTH, CHART_HEIGHT, ticks[-1])

    def x(week: int) -> float:
        span = plot.right - plot.left - LEGEND_WIDTH - 20  # the legend sits on the right
        return plot.left + (week / max_week * span if max_week else span / 2)

    parts = [_svg_open("chart-cohorts", label), _y_axis(plot, ticks, "percent")]
    for week in range(max_week + 1):
        parts.append(f'<text x="{x(week):.1f}" y="{plot.bottom + 18}" text-anchor="middle" '
                     f'font-size="11" fill="{MUTED}">{week}</text>')
    parts.append(f'<text x="{(plot.left + plot.right - LEGEND_WIDTH) / 2:.1f}" '
                 f'y="{plot.bottom + 36}" '
                 f'text-anchor="middle" font-size="12" fill="{MUTED}">'
                 "weeks since first referral click</text>")
    for index, cohort in enumerate(weeks):
        colour = SERIES[index % len(SERIES)]
        points = [(x(p["weeks_since_first_click"]), plot.y(p["conversion"]), p)
                  for p in curves[cohort]]
        complete = [pt for pt in points if pt[2]["complete"]]
        maturing = points[len(complete) - 1:] if complete else points
        parts.append(f'<g class="cohort" data-cohort="{_e(cohort)}">')
        if len(complete) > 1:
            parts.append(_path(complete, colour, dashed=False))
        if len(maturing) > 1:
            parts.append(_path(maturing, colour, dashed=True))
        for px, py, p in points:
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{colour}">'
                         f'<title>{_e(cohort)}, week {p["weeks_since_first_click"]}: '
                         f'{p["converted"]:,} of {p["visitors"]:,} '
                         f'({format_percent(p["conversion"])})</title></circle>')
        legend_y = plot.top + 14 + index * 20
        legend_x = plot.right - LEGEND_WIDTH
        parts.append(f'<line x1="{legend_x}" x2="{legend_x + 20}" y1="{legend_y - 4}" '
                     f'y2="{legend_y - 4}" stroke="{colour}" stroke-width="3"/>'
                     f'<text x="{legend_x + 26}" y="{legend_y}" font-size="12" '
                     f'fill="{INK}">{_e(cohort)} ({sizes[cohort]:,})</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _path(points: Sequence[tuple[float, float, Any]], colour: str, dashed: bool) -> str:
    d = " ".join(f"{'M' if i == 0 else 'L'}{px:.1f},{py:.1f}"
                 for i, (px, py, _) in enumerate(points))
    dash = ' stroke-dasharray="5 4"' if dashed else ""
    return (f'<path class="line" d="{d}" fill="none" stroke="{colour}" stroke-width="2.5" '
            f'stroke-linejoin="round"{dash}/>')


def daily_svg(daily: ReportResult) -> str:
    """Referrals decided per day as bars; reward-due and reversal messages as lines."""
    label = "Referrals decided and reward messages per day"
    days = daily.records()
    if not days:
        return _empty("chart-daily", label, "no referrals or rewards yet")
    peak = max(max(d["referrals"], d["rewards_due"], d["reversals"]) for d in days)
    ticks = nice_ticks(max(peak, 1))
    plot = Plot(CHART_WIDTH, CHART_HEIGHT, ticks[-1])
    slot = (plot.right - plot.left) / len(days)
    bar = max(slot * 0.7, 1.0)
    parts = [_svg_open("chart-daily", label), _y_axis(plot, ticks, "count")]
    label_every = max(1, math.ceil(len(days) / 10))
    for i, day in enumerate(days):
        left = plot.left + i * slot + (slot - bar) / 2
        top = plot.y(day["referrals"])
        parts.append(f'<rect class="bar" x="{left:.1f}" y="{top:.1f}" width="{bar:.1f}" '
                     f'height="{plot.bottom - top:.1f}" fill="{SERIES[0]}" opacity="0.85">'
                     f'<title>{_e(day["day"])}: {day["referrals"]:,} referrals '
                     f'({day["qualified"]:,} qualified), {day["rewards_due"]:,} rewards due, '
                     f'{day["reversals"]:,} reversals</title></rect>')
        if i % label_every == 0:
            parts.append(f'<text x="{left + bar / 2:.1f}" y="{plot.bottom + 18}" '
                         f'text-anchor="middle" font-size="11" fill="{MUTED}">'
                         f'{_e(day["day"][5:])}</text>')
    for key, colour in (("rewards_due", SERIES[2]), ("reversals", SERIES[3])):
        points = [(plot.left + (i + 0.5) * slot, plot.y(d[key]), d) for i, d in enumerate(days)]
        if len(points) == 1:
            px, py, _ = points[0]
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>')
        else:
            parts.append(_path(points, colour, dashed=False).replace(
                'class="line"', f'class="line series-{key}"'))
    parts.append(_legend([("referrals decided", SERIES[0], False),
                          ("rewards due", SERIES[2], True), ("reversals", SERIES[3], True)],
                         plot.left, plot.bottom + 38))
    parts.append("</svg>")
    return "".join(parts)


def liability_svg(liability: ReportResult) -> str:
    """Reward amounts per status, all shops, one group of bars per currency."""
    label = "Reward liability by status and currency, all shops"
    rows = [r for r in liability.records() if r["shop_id"] == ALL_SHOPS]
    if not rows:
        return _empty("chart-liability", label, "no rewards yet")
    by_currency: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_currency[row["currency"]].append(row)
    bar_height, gap, label_width = 22, 6, 80
    height = MARGIN_TOP + sum(len(v) * (bar_height + gap) + 26 for v in by_currency.values())
    usable = LIABILITY_WIDTH - label_width - 190
    status_colour = {RewardStatusName.PENDING: SERIES[6], RewardStatusName.HELD: SERIES[1],
                     RewardStatusName.DUE: SERIES[0], PAID: SERIES[2],
                     RewardStatusName.REVERSED: SERIES[3]}
    parts = [_svg_open("chart-liability", label, width=LIABILITY_WIDTH, height=height)]
    y = MARGIN_TOP
    for currency, entries in sorted(by_currency.items()):
        top = max(abs(e["amount_minor"]) for e in entries) or 1
        parts.append(f'<text x="0" y="{y + 12}" font-size="13" font-weight="700" '
                     f'fill="{INK}">{_e(currency)}</text>')
        y += 20
        for entry in entries:
            width = max(usable * abs(entry["amount_minor"]) / top, 2.0)
            money = format_money(entry["amount_minor"], currency, liability.points_units)
            parts.append(
                f'<text x="{label_width - 10}" y="{y + bar_height / 2 + 4:.1f}" '
                f'text-anchor="end" font-size="12" fill="{INK}">{_e(entry["status"])}</text>'
                f'<rect class="bar" x="{label_width}" y="{y}" width="{width:.1f}" '
                f'height="{bar_height}" rx="3" '
                f'fill="{status_colour.get(entry["status"], MUTED)}">'
                f'<title>{_e(entry["status"])}: {_e(money)} in {entry["rewards"]:,} rewards'
                f'</title></rect>'
                f'<text x="{label_width + width + 8:.1f}" y="{y + bar_height / 2 + 4:.1f}" '
                f'font-size="12" fill="{INK}">{_e(money)} '
                f'<tspan fill="{MUTED}">({entry["rewards"]:,})</tspan></text>')
            y += bar_height + gap
        y += 6
    parts.append("</svg>")
    return "".join(parts)


# ------------------------------------------------------------------------------- sections


def _pill(status: str) -> str:
    colour = STATUS_COLOURS.get(status, MUTED)
    return f'<span class="pill status-{_e(status.replace(" ", "-"))}" ' \
           f'style="--status:{colour}">{_e(status)}</span>'


def _cards(results: Sequence[KpiResult], names: Sequence[str], css_class: str) -> str:
    overall = [r for r in results if r.shop_id == ALL_SHOPS]
    cards = []
    for name in names:
        rows = [r for r in overall if r.kpi == name]
        if not rows:
            continue
        first = rows[0]
        # A money KPI has one overall figure per currency, each with its own status; the
        # worst of them colours the card's edge.
        worst = min(rows, key=lambda r: _STATUS_RANK.get(r.status, len(_STATUS_RANK))).status
        if len(rows) == 1:
            values = f'<div class="value">{_e(format_measure(first.value, first.unit))}</div>'
            values += _pill(first.status)
        else:
            values = "".join(
                f'<div class="value">{_e(format_measure(r.value, r.unit))} '
                f"<small>{_e(r.currency)}</small> {_pill(r.status)}</div>" for r in rows)
        cards.append(
            f'<div class="card kpi-card" data-kpi="{_e(name)}" '
            f'style="--status:{STATUS_COLOURS.get(worst, MUTED)}">'
            f"<h3>{_e(first.title)}</h3>{values}"
            f"<p class=\"bench\">{_e(first.benchmark)}</p>"
            f"<p class=\"def\">{_e(first.definition)}</p></div>")
    return f'<div class="cards {css_class}">{"".join(cards)}</div>'


_STATUS_RANK = {s: i for i, s in enumerate((
    STATUS_ALERT, STATUS_BELOW_MEDIAN, STATUS_BELOW_HEALTHY, STATUS_NO_DATA, STATUS_MEDIAN,
    STATUS_ABOVE_HEALTHY, STATUS_HEALTHY, STATUS_TOP_QUARTILE, STATUS_INFO))}


def _operand(value: float | None, result: KpiResult) -> str:
    if value is None:
        return "-"
    if result.operand == "money":
        return format_money(value, result.currency)
    return f"{value:,.0f}"


def _scorecard_table(results: Sequence[KpiResult]) -> str:
    rows = []
    for r in results:
        total = ' class="total"' if r.shop_id == ALL_SHOPS else ""
        rows.append(
            f'<tr{total} data-kpi="{_e(r.kpi)}" data-status="{_e(r.status)}">'
            f'<td class="wrap">{_e(r.title)}</td><td>{_e(r.shop_id)}</td>'
            f"<td>{_e(r.currency or '')}</td>"
            f'<td class="num">{_e(format_measure(r.value, r.unit))}</td>'
            f"<td>{_pill(r.status)}</td>"
            f'<td class="num">{_e(_operand(r.numerator, r))}</td>'
            f'<td class="num">{_e(_operand(r.denominator, r))}</td>'
            f'<td class="wrap bench">{_e(r.benchmark)}</td></tr>')
    return ('<table id="table-scorecard"><thead><tr><th>KPI</th><th>shop</th><th>currency</th>'
            '<th class="num">value</th><th>status</th><th class="num">numerator</th>'
            '<th class="num">denominator</th><th>benchmark (docs/benchmarks.md)</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


_NUMERIC = frozenset({"count", "money", "percent", "ratio"})


def _header(column: str) -> str:
    # Money columns are shown in major units here, so their "_minor" suffix would mislead.
    return column.removesuffix("_minor").replace("_", " ")


def _report_table(result: ReportResult, table_id: str, columns: Sequence[str],
                  limit: int = TABLE_ROW_LIMIT, wrap: Sequence[str] = ()) -> str:
    shown = [c for c in result.columns if c.name in columns]
    head = "".join(f'<th class="num">{_e(_header(c.name))}</th>' if c.kind in _NUMERIC
                   else f"<th>{_e(_header(c.name))}</th>" for c in shown)
    body = []
    records = result.records()
    for record in records[:limit]:
        cells = []
        for c in shown:
            value = record[c.name]
            if c.kind == "money":
                text = format_money(value, record.get(c.currency_column or ""),
                                    result.points_units)
            elif c.kind == "percent":
                text = format_percent(value)
            elif c.kind == "count":
                text = "-" if value is None else f"{value:,}"
            elif c.kind == "list":
                text = ", ".join(value or [])
            else:
                text = "-" if value is None else str(value)
            cls = (' class="num"' if c.kind in _NUMERIC
                   else ' class="wrap"' if c.kind == "list" or c.name in wrap else "")
            cells.append(f"<td{cls}>{_e(text)}</td>")
        total = ' class="total"' if record.get("shop_id") == ALL_SHOPS else ""
        body.append(f"<tr{total}>{''.join(cells)}</tr>")
    if not records:
        body.append(f'<tr><td colspan="{len(shown)}">nothing recorded</td></tr>')
    more = (f'<p class="lead">showing {limit} of {len(records):,} rows; '
            f"<code>refstream report {_e(result.name)}</code> lists them all</p>"
            if len(records) > limit else "")
    return (f'<div class="scroll"><table id="{table_id}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>{more}")


def _referrers_table(referrers: ReportResult) -> str:
    """One row per referrer; amounts in several currencies share the cell."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for record in referrers.records():
        key = (record["shop_id"], record["referrer_id"])
        row = merged.setdefault(key, {**record, "amounts": []})
        if record["currency"] is not None:
            row["amounts"].append(format_money(record["net_due_minor"], record["currency"],
                                               referrers.points_units))
    body = "".join(
        f"<tr><td>{_e(r['shop_id'])}</td><td>{_e(r['referrer_id'])}</td>"
        f'<td class="num">{r["successful"]:,}</td><td class="num">{r["active"]:,}</td>'
        f'<td class="num">{"<br>".join(_e(a) for a in r["amounts"]) or "-"}</td></tr>'
        for r in list(merged.values())[:REFERRERS_SHOWN])
    if not merged:
        body = '<tr><td colspan="5">nothing recorded</td></tr>'
    return ('<table id="table-referrers"><thead><tr><th>shop</th><th>referrer</th>'
            '<th class="num">successful</th><th class="num">active</th>'
            f'<th class="num">net due</th></tr></thead><tbody>{body}</tbody></table>')


def _review_queue_table(conn: duckdb.DuckDBPyConnection, points: Collection[str],
                        limit: int = TABLE_ROW_LIMIT) -> tuple[int, str]:
    """The referrals waiting for a reviewer, with people, orders and signals named in words
    (the same queue as `refstream review list`); returns (entries, html)."""
    from refstream.reports.review import review_queue

    queue = review_queue(conn)
    body = []
    for item in queue[:limit]:
        held = "<br>".join(_e(f"{side}: {format_money(amount, currency, points)}")
                           for side, amount, currency in item.held_rewards) or "-"
        evidence = "".join(f"<li>{_e(line)}</li>" for line in item.evidence)
        body.append(
            f"<tr><td>{_e(item.shop_id)}</td><td>{_e(item.referee_id)}</td>"
            f"<td>{_e(item.referrer_id or '-')}</td>"
            f"<td>{_e(', '.join(sorted({f.signal for f in item.flags})) or '-')}</td>"
            f'<td class="num">{held}</td><td class="wrap"><ul class="evidence">{evidence}</ul>'
            f'<code class="id">{_e(item.referral_id)}</code></td></tr>')
    if not queue:
        body.append('<tr><td colspan="6">nothing waits for a reviewer</td></tr>')
    more = (f'<p class="lead">showing {limit} of {len(queue):,}; <code>refstream review '
            "list</code> lists them all</p>" if len(queue) > limit else "")
    return len(queue), (
        '<div class="scroll"><table id="table-fraud-queue"><thead><tr><th>shop</th>'
        '<th>referee</th><th>referrer</th><th>signals</th><th class="num">held rewards</th>'
        f"<th>evidence</th></tr></thead><tbody>{''.join(body)}</tbody></table></div>{more}")


def _section(section_id: str, title: str, lead: str, body: str) -> str:
    return (f'<section id="{section_id}"><h2>{_e(title)}</h2><p class="lead">{_e(lead)}</p>'
            f"{body}</section>")


def _period(conn: duckdb.DuckDBPyConnection) -> tuple[str, int]:
    row = conn.execute("""
        SELECT strftime(timezone('UTC', min(t)), '%Y-%m-%d'),
               strftime(timezone('UTC', max(t)), '%Y-%m-%d')
        FROM (SELECT occurred_at AS t FROM clicks UNION ALL SELECT occurred_at FROM orders
              UNION ALL SELECT occurred_at FROM shares
              UNION ALL SELECT occurred_at FROM returns)""").fetchone()
    shops = conn.execute("""
        SELECT count(*) FROM (SELECT shop_id FROM clicks UNION SELECT shop_id FROM orders
                              UNION SELECT shop_id FROM shares)""").fetchone()
    period = f"{row[0]} to {row[1]}" if row and row[0] else "no events yet"
    return period, int(shops[0]) if shops else 0


def render_html_report(conn: duckdb.DuckDBPyConnection,
                       generated_at: datetime | None = None) -> str:
    """The whole report as one HTML document (UTF-8, no external resources)."""
    results = scorecard(conn)
    funnel = run_report(conn, "funnel")
    cohorts = run_report(conn, "cohorts")
    daily = run_report(conn, "daily")
    liability = run_report(conn, "liability")
    referrers = run_report(conn, "referrers")
    waiting, queue_table = _review_queue_table(conn, liability.points_units)
    campaigns = run_report(conn, "campaigns")
    period, shops = _period(conn)
    when = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    supporting = [k.name for k in SCORECARD if k.name not in HEADLINE_KPIS]

    funnel_note = "" if payouts_recorded(conn) else f'<p class="note">{_e(NO_PAYOUTS_NOTE)}</p>'
    definitions = "".join(f"<dt>{_e(k.title)} <code>{_e(k.name)}</code></dt>"
                          f"<dd>{_e(k.definition)}. Numerator: {_e(k.numerator)}. "
                          f"Denominator: {_e(k.denominator)}.</dd>" for k in SCORECARD)
    sections = [
        _section("scorecard", "Scorecard, all shops",
                 "Rated against the medians, top quartile and alert thresholds of "
                 "docs/benchmarks.md; "
                 "money KPIs per currency.",
                 _cards(results, HEADLINE_KPIS, "") + _cards(results, supporting, "small")),
        _section("funnel", "Funnel", "shares bring referral clicks; click → signup → first "
                 "order → qualified → due → paid, each label with the rate from the step "
                 "before.",
                 funnel_svg(funnel) + funnel_note),
        _section("cohorts", "Cohorts by week of first click",
                 "Cumulative share of referred visitors who ordered, by weeks since their "
                 "first referral click; dashed where the cohort is still maturing.",
                 cohorts_svg(cohorts)),
        _section("daily", "Referrals and rewards per day",
                 "Referrals by the day of their latest decision; reward-due and reversal "
                 "messages by the day finance was told (UTC).", daily_svg(daily)),
        '<div class="two">' +
        _section("liability", "Reward liability",
                 "Current reward amounts by status, per currency. Due is owed and not yet "
                 "paid (the liability); paid is what the payer's ledger recorded as paid; "
                 "pending and held are contingent.",
                 liability_svg(liability) + _report_table(
                     liability, "table-liability",
                     ("shop_id", "status", "standing", "currency", "rewards",
                      "amount_minor"))) +
        _section("referrers", "Top referrers",
                 "By successful (qualified) referrals; net amount finance was told "
                 "(due minus reversals), per currency.",
                 _referrers_table(referrers)) + "</div>",
        _section("fraud-queue", f"Fraud review queue ({waiting:,} referrals)",
                 "Every referral waiting for a reviewer, oldest flag first, with the evidence "
                 "in words; decide with refstream review approve|reject.", queue_table),
        _section("campaigns", "Campaigns",
                 "Net revenue of referred customers: first orders only and including later "
                 "orders.",
                 _report_table(campaigns, "table-campaigns",
                               ("shop_id", "campaign_id", "referrals", "buyers",
                                "first_order_minor", "all_orders_minor"))),
        _section("scorecard-detail", "Scorecard per shop",
                 "Every KPI for all shops and per shop, with numerator and denominator.",
                 _scorecard_table(results)),
        _section("definitions", "Definitions",
                 "What each figure counts; `refstream report explain KPI` prints its SQL.",
                 f"<dl>{definitions}</dl>"),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>refstream referral report</title><style>{CSS}</style></head><body><main>"
        f"<header><h1>Referral programme report</h1><p>{_e(period)} · {shops:,} "
        f"shop{'s' if shops != 1 else ''} · generated {_e(when)}</p></header>"
        + "".join(sections) +
        "<footer>refstream · every figure is a query over the DuckDB read model; "
        "see Definitions.</footer></main></body></html>\n")


def write_html_report(conn: duckdb.DuckDBPyConnection, path: str | Path) -> Path:
    """Render the report and write it to `path` (parent folders created); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html_report(conn), encoding="utf-8")
    return target
