"""report.html: one self-contained page a person can read (no script, no network).

Sections: the verdict table (each claim, required or not, and what the
checker saw); the anomalies, each explained in words; a timeline with one
row per client process (ops as bars: green ok, grey failed, amber unknown,
red when part of an anomaly) and the nemesis windows shaded across all rows;
throughput and latency over time; the run's notes (faults done, skipped
nemeses, node log lines about discarded writes). Everything is inline SVG
and CSS. Elements a test can look for: ``#verdict``, ``.anomaly``,
``svg.timeline rect.anomalous``, ``rect.nemesis``.
"""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from replikv.check.history import Op

if TYPE_CHECKING:
    from replikv.check.runner import RunResult

_MAX_ROWS = 60
_W = 1100

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
.held{color:#137333;font-weight:bold}.refuted{color:#c5221f;font-weight:bold}.undecided{color:#b06000;font-weight:bold}
.pass{background:#e6f4ea}.fail{background:#fce8e6}.unknown{background:#fef7e0}
.anomaly{border-left:4px solid #c5221f;padding:4px 10px;margin:6px 0;background:#fff5f5}
.note{font-family:monospace;font-size:12px;white-space:pre-wrap}
svg text{font-size:10px;font-family:monospace}
"""


def _e(s: object) -> str:
    return html.escape(str(s))


def write_report(result: "RunResult", path: Path) -> None:
    path.write_text(render_report(result), encoding="utf-8")


def render_report(result: "RunResult") -> str:
    p = result.params
    title = f"replikv check: {p.get('mode')} ({p.get('setting')}) / {p.get('workload')}"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
             f"<style>{_CSS}</style></head><body>", f"<h1>{_e(title)}</h1>",
             f"<p>nemesis: {_e(', '.join(p.get('nemesis', [])) or 'none')} · {_e(p.get('time_s'))} s · "  # type: ignore[arg-type]
             f"{_e(p.get('clients'))} clients · seed {_e(p.get('seed'))} · "
             f"{sum(1 for o in result.history if o.process >= 0)} client ops</p>",
             _verdict_table(result), "<h2>Timeline</h2>",
             "<p>One row per client process; shaded bands are nemesis windows; bars are ops "
             "(green ok, grey failed, amber unknown outcome, <b style='color:#c5221f'>red: part of an "
             "anomaly</b>; hover for details).</p>",
             _timeline(result), _anomalies(result), "<h2>Throughput and latency</h2>", _rates(result.history),
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
        for a in r.anomalies[:20]:
            items.append(f"<div class='anomaly' data-kind='{_e(a.kind)}'><b>{_e(a.kind)}</b> "
                         f"({_e(r.name)}{', key ' + _e(a.key) if a.key else ''}): {_e(a.explanation)}</div>")
        if r.count > min(20, len(r.anomalies)):
            items.append(f"<p>... and {r.count - min(20, len(r.anomalies))} more {_e(r.name)} anomalies</p>")
    if not items:
        return "<h2>Anomalies</h2><p>none found</p>"
    return f"<h2>Anomalies ({sum(r.count for r in result.results)})</h2>" + "".join(items)


def _timeline(result: "RunResult") -> str:
    hist = result.history
    client_ops = [(i, o) for i, o in enumerate(hist) if o.process >= 0]
    if not hist:
        return "<p>no operations</p>"
    end = max(max(o.ret or o.call for o in hist), 1)
    bad: dict[int, str] = {}
    for r in result.results:
        for a in r.anomalies:
            for i in a.ops:
                bad.setdefault(i, f"{a.kind}: {a.explanation}")
    procs = sorted({o.process for _, o in client_ops})
    shown = procs[:_MAX_ROWS]
    row = {p: n for n, p in enumerate(shown)}
    left, rh = 60, 14
    height = 20 + rh * max(1, len(shown))
    x = lambda t: left + (_W - left - 10) * t / end  # noqa: E731
    out = [f"<svg class='timeline' width='{_W}' height='{height}' xmlns='http://www.w3.org/2000/svg'>"]
    for o in hist:
        if o.op == "nemesis":
            x0, x1 = x(o.call), x(o.ret or end)
            out.append(f"<rect class='nemesis' x='{x0:.1f}' y='0' width='{max(1.0, x1 - x0):.1f}' "
                       f"height='{height}' fill='#f9d5a7' opacity='0.5'><title>{_e(o.key)}: {_e(o.value)}"
                       f"</title></rect><text x='{x0 + 2:.1f}' y='{height - 4}'>{_e(o.key)}</text>")
    for p in shown:
        out.append(f"<text x='2' y='{20 + rh * row[p] - 3}'>p{p}</text>")
    for i, o in client_ops:
        if o.process not in row:
            continue
        x0, x1 = x(o.call), x(o.ret if o.ret is not None else min(end, o.call + 2_000_000_000))
        color = "#c5221f" if i in bad else {True: "#34a853", False: "#9aa0a6", None: "#f9ab00"}[o.ok]
        cls = " class='anomalous'" if i in bad else ""
        tip = f"#{i} p{o.process} {o.op} {o.key} {o.value!r} ok={o.ok}" + (f" — {bad[i]}" if i in bad else "")
        y = 20 + rh * row[o.process] - 12
        out.append(f"<rect{cls} x='{x0:.1f}' y='{y}' width='{max(1.5, x1 - x0):.1f}' height='{rh - 4}' "
                   f"fill='{color}'><title>{_e(tip)}</title></rect>")
    out.append("</svg>")
    if len(procs) > len(shown):
        out.append(f"<p>{len(procs) - len(shown)} more processes not drawn</p>")
    return "".join(out)


def _rates(hist: list[Op]) -> str:
    ops = [o for o in hist if o.process >= 0]
    if not ops:
        return "<p>no operations</p>"
    end = max(o.ret or o.call for o in ops)
    buckets = max(1, min(120, int(end / 250_000_000) + 1))  # 250 ms buckets
    width = end / buckets or 1
    ok = [0] * buckets
    other = [0] * buckets
    lat: dict[int, list[float]] = defaultdict(list)
    for o in ops:
        b = min(buckets - 1, int(o.call / width))
        if o.ok is True:
            ok[b] += 1
            lat[b].append(((o.ret or o.call) - o.call) / 1e6)
        else:
            other[b] += 1
    h, left = 120, 60
    x = lambda b: left + (_W - left - 10) * b / buckets  # noqa: E731
    peak = max(max(ok), max(other), 1)
    thr = [f"<svg class='throughput' width='{_W}' height='{h + 20}' xmlns='http://www.w3.org/2000/svg'>",
           f"<text x='2' y='12'>{peak / (width / 1e9):.0f} op/s</text><text x='2' y='{h}'>0</text>"]
    for series, color in ((ok, "#34a853"), (other, "#f9ab00")):
        pts = " ".join(f"{x(b + 0.5):.1f},{h - (h - 10) * v / peak:.1f}" for b, v in enumerate(series))
        thr.append(f"<polyline fill='none' stroke='{color}' stroke-width='1.5' points='{pts}'/>")
    thr.append(f"<text x='{left}' y='{h + 15}'>ok ops (green) and failed/unknown (amber) per "
               f"{width / 1e6:.0f} ms; x axis 0..{end / 1e9:.1f} s</text></svg>")
    p50 = [sorted(v)[len(v) // 2] if (v := lat.get(b)) else 0.0 for b in range(buckets)]
    p99 = [sorted(v)[min(len(v) - 1, int(len(v) * 0.99))] if (v := lat.get(b)) else 0.0 for b in range(buckets)]
    lpeak = max(max(p99), 1.0)
    lsvg = [f"<svg class='latency' width='{_W}' height='{h + 20}' xmlns='http://www.w3.org/2000/svg'>",
            f"<text x='2' y='12'>{lpeak:.0f} ms</text><text x='2' y='{h}'>0</text>"]
    for series, color in ((p50, "#1a73e8"), (p99, "#c5221f")):
        pts = " ".join(f"{x(b + 0.5):.1f},{h - (h - 10) * v / lpeak:.1f}" for b, v in enumerate(series))
        lsvg.append(f"<polyline fill='none' stroke='{color}' stroke-width='1.5' points='{pts}'/>")
    lsvg.append(f"<text x='{left}' y='{h + 15}'>latency of ok ops: p50 (blue), p99 (red)</text></svg>")
    return "".join(thr) + "<br>" + "".join(lsvg)
