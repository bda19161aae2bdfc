"""report.html: one self-contained page a person can read (no script, no network).

Sections: the verdict table (each claim, required or not, and what the
checker saw); the anomalies, each explained in words; a timeline with one
row per client (ops as bars: green ok, grey failed, amber unknown, red when
part of an anomaly) and the nemesis windows shaded across all rows;
throughput and latency over time; the run's notes (faults done, skipped
nemeses, client errors by kind, node log lines about discarded writes).
Everything is inline SVG and CSS. Elements a test can look for:
``#verdict``, ``.anomaly``, ``svg.timeline rect.anomalous``, ``rect.nemesis``.

Size is bounded whatever the run length (`MAX_BYTES` is what a test holds
it to): the history is read once into a `Summary` of fixed size (a run
builds it while the checkers read the history) (time
columns that double in width when the run outgrows them, a latency
histogram per column), and the timeline draws a history of up to
`DETAIL_OPS` ops op by op, a longer one as cells (one bar per client and
column, coloured by the worst outcome in it, runs of equal cells merged).
Every op that takes part in an anomaly is drawn on top at full detail, and
there are at most `result.MAX_ANOMALIES` anomalies per checker.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from replikv.check.history import NEMESIS_PROCESS, KeyOps, Op

if TYPE_CHECKING:
    from replikv.check.runner import RunResult

MAX_BYTES = 2_000_000  # the bound tests hold a report to
DETAIL_OPS = 3000  # up to this many client ops, each is drawn
COLUMNS = 1024  # time columns a Summary keeps (it merges pairs beyond)
_CELLS = 12_000  # cells drawn at most (rows x columns) in a summarized timeline
_MAX_ROWS = 60
_MAX_NEMESIS = 600  # nemesis windows drawn (a long run has one every few seconds)
_SHOWN_ANOMALIES = 20  # per checker, explained in the text
_TIP_VALUE = 160  # characters of an op's value in its tooltip
_W = 1100
_LAT_BINS_PER_OCTAVE = 8  # latency histogram resolution: 2^(1/8), about 9 %

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
.held{color:#137333;font-weight:bold}.refuted{color:#c5221f;font-weight:bold}.undecided{color:#b06000;font-weight:bold}
.pass{background:#e6f4ea}.fail{background:#fce8e6}.unknown{background:#fef7e0}
.anomaly{border-left:4px solid #c5221f;padding:4px 10px;margin:6px 0;background:#fff5f5;white-space:pre-wrap}
.note{font-family:monospace;font-size:12px;white-space:pre-wrap}
svg text{font-size:10px;font-family:monospace}
"""
_OUTCOME = {True: 0, False: 1, None: 2}  # cell colour: the worst outcome in it
_COLOR = ("#34a853", "#9aa0a6", "#f9ab00")


def _e(s: object) -> str:
    return html.escape(str(s))


@dataclass
class Summary:
    """What the report draws, of a history of any length, in fixed memory.

    Time is cut into at most `COLUMNS` columns of equal width; when an op falls
    past the last, the width doubles and neighbouring columns merge. Per
    column: ok and other ops (throughput) and a log-scale histogram of ok
    latencies (p50 / p99 to about 9 %); per client row and column: ops by
    outcome. Up to `DETAIL_OPS` client ops are also kept as they are.
    """

    clients: int | None = None  # rows are process mod clients (a client's successive connections)
    width: int = 1_000_000  # ns per column
    origin: int | None = None  # time 0 of the drawing: the first op's call (earlier calls clamp to it)
    end: int = 1  # ns after the origin
    ops: int = 0
    detail: list[tuple[int, Op]] | None = field(default_factory=list)
    nemesis: list[Op] = field(default_factory=list)
    ok: list[int] = field(default_factory=lambda: [0] * COLUMNS)
    other: list[int] = field(default_factory=lambda: [0] * COLUMNS)
    latency: list[dict[int, int]] = field(default_factory=lambda: [{} for _ in range(COLUMNS)])
    # row -> column -> [ok, failed, unknown, cas not applied]: a cas answered "no swap" is ok=false
    # like a refused op, but says nothing about availability
    rows: dict[int, list[list[int]]] = field(default_factory=dict)

    @classmethod
    def of(cls, history: Iterable[Op], clients: int | None = None) -> "Summary":
        s = cls(clients)
        for i, op in enumerate(history):
            s.add(i, op)
        return s

    def feed(self, groups: Iterable[KeyOps]) -> Iterator[KeyOps]:
        """Pass key groups through, adding their ops: the summary is built during the
        checkers' pass over the history instead of in a pass of its own."""
        for g in groups:
            for i, op in zip(g.indices, g.ops):
                self.add(i, op)
            yield g

    def row(self, process: int) -> int:
        return process % self.clients if self.clients else process

    def add(self, index: int, op: Op) -> None:
        if self.origin is None:
            self.origin = op.call
        call = max(0, op.call - self.origin)
        t_end = (op.ret if op.ret is not None else op.call) - self.origin
        self.end = max(self.end, t_end)
        if op.process == NEMESIS_PROCESS:
            if len(self.nemesis) < _MAX_NEMESIS:
                self.nemesis.append(op)
            return
        if op.process < 0:
            return
        self.ops += 1
        if self.detail is not None:
            self.detail.append((index, op))
            if len(self.detail) > DETAIL_OPS:
                self.detail = None
        while call >= self.width * COLUMNS:
            self._widen()
        c = call // self.width
        if op.ok is True:
            self.ok[c] += 1
            lat_us = max(1.0, ((op.ret or op.call) - op.call) / 1000)
            b = int(math.log2(lat_us) * _LAT_BINS_PER_OCTAVE)
            h = self.latency[c]
            h[b] = h.get(b, 0) + 1
        else:
            self.other[c] += 1
        r = self.row(op.process)
        cells = self.rows.get(r)
        if cells is None:
            if len(self.rows) >= _MAX_ROWS:
                return
            cells = self.rows[r] = [[0, 0, 0, 0] for _ in range(COLUMNS)]
        cells[c][3 if op.ok is False and op.op == "cas" else _OUTCOME[op.ok]] += 1

    def _widen(self) -> None:
        self.width *= 2
        half = COLUMNS // 2

        def merge(xs: list[int]) -> list[int]:
            return [xs[2 * i] + xs[2 * i + 1] for i in range(half)] + [0] * half

        self.ok, self.other = merge(self.ok), merge(self.other)
        lat: list[dict[int, int]] = []
        for i in range(half):
            a, b = dict(self.latency[2 * i]), self.latency[2 * i + 1]
            for k, v in b.items():
                a[k] = a.get(k, 0) + v
            lat.append(a)
        self.latency = lat + [{} for _ in range(half)]
        for r, cells in self.rows.items():
            self.rows[r] = [[x + y for x, y in zip(cells[2 * i], cells[2 * i + 1])] for i in range(half)] + \
                [[0, 0, 0, 0] for _ in range(half)]

    def used_columns(self) -> int:
        return min(COLUMNS, self.end // self.width + 1)


def write_report(result: "RunResult", path: Path) -> None:
    path.write_text(render_report(result), encoding="utf-8")


def render_report(result: "RunResult") -> str:
    p = result.params
    clients = p.get("clients")
    summary = result.summary or Summary.of(result.history, clients if isinstance(clients, int) else None)
    title = f"replikv check: {p.get('mode')} ({p.get('setting')}) / {p.get('workload')}"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
             f"<style>{_CSS}</style></head><body>", f"<h1>{_e(title)}</h1>",
             f"<p>nemesis: {_e(', '.join(p.get('nemesis', [])) or 'none')} · {_e(p.get('time_s'))} s · "  # type: ignore[arg-type]
             f"{_e(p.get('clients'))} clients · seed {_e(p.get('seed'))} · "
             f"{summary.ops} client ops</p>",
             _verdict_table(result), "<h2>Timeline</h2>", _timeline(result, summary),
             _anomalies(result), "<h2>Throughput and latency</h2>", _rates(summary),
             "<h2>Notes</h2>", "".join(f"<div class='note'>{_e(n)}</div>" for n in result.notes) or "<p>none</p>",
             "</body></html>"]
    return "\n".join(parts)


def _verdict_table(result: "RunResult") -> str:
    rows = []
    by_name = {r.name: r for r in result.results}
    for c in result.claims:
        r = by_name.get(c.checker)
        status = r.status if r else "unknown"
        if c.required:
            outcome = {"pass": "held", "fail": "REFUTED", "unknown": "undecided"}[status]
        else:
            outcome = "seen (not claimed)" if status == "fail" else "not seen"
        rows.append(f"<tr class='{_e(status)}'><td>{_e(c.checker)}</td><td>{_e(c.text)}</td>"
                    f"<td>{'required' if c.required else 'not claimed'}</td><td>{_e(outcome)}</td>"
                    f"<td>{_e(r.summary if r else 'not run')}</td></tr>")
    return (f"<h2>Verdict: <span id='verdict' class='{_e(result.verdict)}'>{_e(result.verdict)}</span> "
            f"(exit {result.exit_code})</h2><table><tr><th>checker</th><th>claim</th><th>kind</th>"
            f"<th>outcome</th><th>what the checker saw</th></tr>{''.join(rows)}</table>")


def _anomalies(result: "RunResult") -> str:
    items = []
    for r in result.results:
        for a in r.anomalies[:_SHOWN_ANOMALIES]:
            items.append(f"<div class='anomaly' data-kind='{_e(a.kind)}'><b>{_e(a.kind)}</b> "
                         f"({_e(r.name)}{', key ' + _e(a.key) if a.key else ''}): {_e(a.explanation)}</div>")
        shown = min(_SHOWN_ANOMALIES, len(r.anomalies))
        if r.count > shown:
            items.append(f"<p>... and {r.count - shown} more {_e(r.name)} anomalies"
                         f"{' (summary.json has the counts)' if r.count > len(r.anomalies) else ''}</p>")
    if not items:
        return "<h2>Anomalies</h2><p>none found</p>"
    return f"<h2>Anomalies ({sum(r.count for r in result.results)})</h2>" + "".join(items)


def _anomalous_ops(result: "RunResult") -> dict[int, str]:
    bad: dict[int, str] = {}
    for r in result.results:
        for a in r.anomalies:
            for i in a.ops:
                bad.setdefault(i, f"{a.kind}: {a.explanation}"[:400])
    return bad


def _fetch(history: Sequence[Op], indices: Iterable[int]) -> dict[int, Op]:
    return {i: history[i] for i in sorted(indices) if 0 <= i < len(history)}


def _timeline(result: "RunResult", s: Summary) -> str:
    if s.ops == 0 and not s.nemesis:
        return "<p>no operations</p>"
    bad = _anomalous_ops(result)
    shown = sorted(s.rows)
    row = {p: n for n, p in enumerate(shown)}
    left, rh = 70, 14
    height = 20 + rh * max(1, len(shown))
    end, origin = s.end, s.origin or 0
    x = lambda t: left + (_W - left - 10) * max(0, t - origin) / end  # noqa: E731
    what = "client" if s.clients else "process"
    if s.detail is not None:
        intro = (f"One row per {what}; bars are ops (green ok, grey failed, amber unknown outcome, "
                 "<b style='color:#c5221f'>red: part of an anomaly</b>; hover for details).")
    else:
        intro = (f"{s.ops} ops, too many to draw one by one: one row per {what}, each bar a stretch of "
                 "time coloured by the share of its ops that failed or had an unknown outcome (a cas "
                 "that did not swap is an answer, not a failure; green: "
                 "none; yellow-green: under 20 %; amber: under 60 %; grey: more; hover for counts). "
                 "Ops that take part in an anomaly are drawn on top, one by one, in "
                 "<b style='color:#c5221f'>red</b>.")
    out = [f"<p>{intro} Shaded bands are nemesis windows.</p>",
           f"<svg class='timeline' width='{_W}' height='{height}' xmlns='http://www.w3.org/2000/svg'>"]
    for o in s.nemesis:
        x0, x1 = x(o.call), x(o.ret or origin + end)
        label = f"<text x='{x0 + 2:.1f}' y='{height - 4}'>{_e(o.key)}</text>" if x1 - x0 > 30 else ""
        out.append(f"<rect class='nemesis' x='{x0:.1f}' y='0' width='{max(1.0, x1 - x0):.1f}' "
                   f"height='{height}' fill='#f9d5a7' opacity='0.5'><title>{_e(o.key)}: {_e(o.value)}"
                   f"</title></rect>{label}")
    for p in shown:
        out.append(f"<text x='2' y='{20 + rh * row[p] - 3}'>{'c' if s.clients else 'p'}{p}</text>")

    def bar(i: int, o: Op) -> str:
        x0 = x(o.call)
        x1 = x(o.ret if o.ret is not None else min(origin + end, o.call + 2_000_000_000))
        color = "#c5221f" if i in bad else _COLOR[_OUTCOME[o.ok]]
        cls = " class='anomalous'" if i in bad else ""
        value = repr(o.value)  # a transaction's value (its reads) can be long: clipped to keep the size bound
        value = value if len(value) <= _TIP_VALUE else value[:_TIP_VALUE] + "…"
        tip = f"#{i} p{o.process} {o.op} {o.key} {value} ok={o.ok}" + (f" — {bad[i]}" if i in bad else "")
        y = 20 + rh * row[s.row(o.process)] - 12
        return (f"<rect{cls} x='{x0:.1f}' y='{y}' width='{max(1.5, x1 - x0):.1f}' height='{rh - 4}' "
                f"fill='{color}'><title>{_e(tip)}</title></rect>")

    if s.detail is not None:
        out += [bar(i, o) for i, o in s.detail if s.row(o.process) in row and i not in bad]
    else:
        out += _cells(s, shown, row, rh, left)
    for i, o in _fetch(result.history, bad).items():
        if o.process >= 0 and s.row(o.process) in row:
            out.append(bar(i, o))
    out.append("</svg>")
    return "".join(out)


def _cells(s: Summary, shown: list[int], row: dict[int, int], rh: int, left: int) -> list[str]:
    """The summarized timeline: per row, runs of columns with the same worst outcome, one bar each."""
    used = s.used_columns()
    per = max(1, -(-used // max(1, _CELLS // max(1, len(shown)))))  # summary columns per drawn cell
    n_cells = -(-used // per)
    px = (_W - left - 10) * (s.width * per) / s.end
    out = []
    for p in shown:
        cols = s.rows[p]
        y = 20 + rh * row[p] - 12
        run_start, run_color, run_counts = 0, -1, [0, 0, 0, 0]

        def flush(stop: int) -> None:
            if run_color < 0:
                return
            n_ok, n_failed, n_unknown, n_cas = run_counts
            out.append(f"<rect x='{left + run_start * px:.1f}' y='{y}' width='{max(1.0, (stop - run_start) * px):.1f}' "
                       f"height='{rh - 4}' fill='{_SHARE_COLOR[run_color]}'><title>{n_ok} ok, {n_failed} failed, "
                       f"{n_unknown} unknown, {n_cas} cas not applied</title></rect>")

        for c in range(n_cells):
            counts = [sum(cols[k][j] for k in range(c * per, min(used, (c + 1) * per))) for j in range(4)]
            color = _share_color(counts)
            if color != run_color:
                flush(c)
                run_start, run_color, run_counts = c, color, [0, 0, 0, 0]
            run_counts = [a + b for a, b in zip(run_counts, counts)]
        flush(n_cells)
    return out


_SHARE_COLOR = ("#34a853", "#b5cf49", "#f9ab00", "#80868b")


def _share_color(counts: list[int]) -> int:
    """Colour of a cell with [ok, failed, unknown, cas not applied] ops: by the share that failed or
    had an unknown outcome (-1: empty)."""
    total = sum(counts)
    if not total:
        return -1
    bad = (counts[1] + counts[2]) / total
    return 0 if bad == 0 else 1 if bad < 0.2 else 2 if bad < 0.6 else 3


def _percentile(hist: dict[int, int], q: float) -> float:
    """The latency (ms) below which a fraction q of the histogram lies (bin midpoint)."""
    total = sum(hist.values())
    if not total:
        return 0.0
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= q * total:
            return 2 ** ((b + 0.5) / _LAT_BINS_PER_OCTAVE) / 1000
    return 0.0


def _rates(s: Summary) -> str:
    if s.ops == 0:
        return "<p>no operations</p>"
    used = s.used_columns()
    per = max(1, -(-used // 120))  # at most 120 points
    buckets = -(-used // per)
    width = s.width * per
    ok = [sum(s.ok[b * per:(b + 1) * per]) for b in range(buckets)]
    other = [sum(s.other[b * per:(b + 1) * per]) for b in range(buckets)]
    lat: list[dict[int, int]] = []
    for b in range(buckets):
        h: dict[int, int] = {}
        for col in s.latency[b * per:(b + 1) * per]:
            for k, v in col.items():
                h[k] = h.get(k, 0) + v
        lat.append(h)
    h, left = 120, 60
    x = lambda b: left + (_W - left - 10) * b / buckets  # noqa: E731
    peak = max(max(ok), max(other), 1)
    thr = [f"<svg class='throughput' width='{_W}' height='{h + 20}' xmlns='http://www.w3.org/2000/svg'>",
           f"<text x='2' y='12'>{peak / (width / 1e9):.0f} op/s</text><text x='2' y='{h}'>0</text>"]
    for series, color in ((ok, "#34a853"), (other, "#f9ab00")):
        pts = " ".join(f"{x(b + 0.5):.1f},{h - (h - 10) * v / peak:.1f}" for b, v in enumerate(series))
        thr.append(f"<polyline fill='none' stroke='{color}' stroke-width='1.5' points='{pts}'/>")
    thr.append(f"<text x='{left}' y='{h + 15}'>ok ops (green) and failed/unknown (amber) per "
               f"{width / 1e6:.0f} ms; x axis 0..{buckets * width / 1e9:.1f} s</text></svg>")
    p50 = [_percentile(v, 0.5) for v in lat]
    p99 = [_percentile(v, 0.99) for v in lat]
    lpeak = max(max(p99), 1.0)
    lsvg = [f"<svg class='latency' width='{_W}' height='{h + 20}' xmlns='http://www.w3.org/2000/svg'>",
            f"<text x='2' y='12'>{lpeak:.0f} ms</text><text x='2' y='{h}'>0</text>"]
    for series, color in ((p50, "#1a73e8"), (p99, "#c5221f")):
        pts = " ".join(f"{x(b + 0.5):.1f},{h - (h - 10) * v / lpeak:.1f}" for b, v in enumerate(series))
        lsvg.append(f"<polyline fill='none' stroke='{color}' stroke-width='1.5' points='{pts}'/>")
    lsvg.append(f"<text x='{left}' y='{h + 15}'>latency of ok ops: p50 (blue), p99 (red), to about "
                f"9 %</text></svg>")
    return "".join(thr) + "<br>" + "".join(lsvg)
