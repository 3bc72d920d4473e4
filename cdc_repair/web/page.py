"""The status page as server-rendered HTML (pure: status document in, HTML string out).

Everything a person needs is in the HTML itself, so it reads without JavaScript; the script only adds the
uPlot charts (fed by `/api/history`) and refreshes the numbers every few seconds. Numbers carry
`data-value` attributes and stable ids, which the browser test compares with `/api/status`.
Every value from the document is escaped: ledger keys and error texts come from user data. What each value
means and how it is formatted is `values.py`; this module lays the sections out and holds the template.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cdc_repair.web.values import (
    as_dict,
    as_list,
    esc,
    fmt_duration,
    fmt_number,
    fmt_time,
    html_badge,
    html_table,
    max_source_lag,
    num,
    open_total,
    repairs_applied,
    role_of,
    unavailable,
)

REFRESH_S = 5
SCAN_SILENT_S = 120  # a running full scan that saved no progress for this long is flagged (died or hangs)


def _role_badge(status: Mapping[str, Any]) -> str:
    """A standby is a healthy state (it takes over when the leader goes), so both roles show as fine."""
    role = role_of(status)
    return '<span class="badge unknown">unknown</span>' if role is None else f'<span class="badge ok">{role}</span>'


def _lock_holder(status: Mapping[str, Any]) -> str:
    lock = as_dict(status.get("leader_lock"))
    if not lock:
        return "n/a"
    holder = as_dict(lock.get("holder"))
    if lock.get("holder_connection_id") is None:
        return "nobody (free)"
    if not holder.get("host"):
        return f"connection {esc(lock.get('holder_connection_id'))} (host not recorded)"
    return (f'{esc(holder.get("host"))} · pid {esc(holder.get("pid"))}'
            f'<div class="detail">since {esc(fmt_time(holder.get("since")))}</div>')


def _why(ident: str, reason: str | None) -> str:
    return f'<div class="detail err" id="{ident}-why">{esc(reason)}</div>' if reason else ""


def _config_card(status: Mapping[str, Any]) -> tuple[str, Any]:
    """Config generation (reloads applied since start) and the last reload's outcome."""
    cfg = as_dict(status.get("config"))
    if not cfg:
        return "n/a", None
    gen = cfg.get("generation")
    last = as_dict(cfg.get("last_reload"))
    if not last:
        detail = "no reload since start"
    elif last.get("ok"):
        restart = as_list(last.get("restart"))
        detail = f"last reload ok {fmt_time(last.get('at'))}" + (
            f"; needs restart: {', '.join(map(str, restart))}" if restart else "")
    else:
        problems = "; ".join(map(str, as_list(last.get("problems"))))
        detail = f"last reload rejected {fmt_time(last.get('at'))}: {problems}"
    cls = "detail" if not last or last.get("ok") else "detail err"
    return (f'generation {fmt_number(gen)}<div class="{cls}" id="config-reload" '
            f'data-ok="{esc(last.get("ok") if last else "")}">{esc(detail)}</div>'), gen


def _dead_letter_card(status: Mapping[str, Any]) -> tuple[str, Any]:
    dl = as_dict(status.get("dead_letters"))
    count = dl.get("count")
    if not dl or count is None:
        return "n/a", None
    last = dl.get("last_reason")
    detail = (f'<div class="detail err" id="dead-letters-last">last: {esc(last)} '
              f'({esc(fmt_time(dl.get("last_at")))})</div>' if last else "")
    return f"{fmt_number(count)}{detail}", count


def _cards(status: Mapping[str, Any], ready: bool | None) -> str:
    lag = max_source_lag(status)
    consumer = as_dict(status.get("lag")).get("consumer_messages")
    total = open_total(status)
    applied = repairs_applied(status)
    inc = as_dict(status.get("inconsistencies"))
    oldest = num(inc.get("oldest_open_age_s"))
    ledger_why = str(inc.get("unavailable") or "") or unavailable(status, "ledger")
    config_html, generation = _config_card(status)
    dead_html, dead = _dead_letter_card(status)
    oldest_html = fmt_duration(oldest) if oldest is not None else ("n/a" if ledger_why else "none open")
    if oldest is not None and inc.get("oldest_open_pair"):
        oldest_html += f'<div class="detail">pair {esc(inc.get("oldest_open_pair"))}</div>'
    cards = [
        ("ready", "Ready", html_badge(ready), None),
        ("binlog-lag", "Binlog lag (s)", fmt_number(lag, 1), lag),
        ("consumer-lag", "Consumer lag (msgs)", "unknown" if consumer == "unknown" else fmt_number(consumer),
         consumer),
        ("open-total", "Open inconsistencies", fmt_number(total) + _why("open-total", ledger_why if total is None
                                                                      else None), total),
        ("oldest-open", "Oldest open", oldest_html, oldest),
        ("repairs-applied", "Repairs applied", fmt_number(applied) + _why(
            "repairs-applied", unavailable(status, "repair_counts") if applied is None else None), applied),
        ("dead-letters", "Dead letters", dead_html, dead),
        ("role", "Role", _role_badge(status), None),
        ("leader-lock", "Leader lock held by", _lock_holder(status), None),
        ("config", "Config", config_html, generation),
    ]
    out = []
    for ident, label, shown, value in cards:
        data = f' data-value="{esc(value)}"' if value is not None else ""
        warn = " warn" if (ident == "open-total" and total) or (ident == "dead-letters" and dead) else ""
        out.append(f'<div class="card{warn}"><div class="label">{esc(label)}</div>'
                   f'<div class="value" id="{ident}"{data}>{shown}</div></div>')
    return f'<section class="cards">{"".join(out)}</section>'


def _scans(status: Mapping[str, Any]) -> str:
    """The newest full scan of each pair: rows done of the estimated total, rate and ETA."""
    rows = []
    for sc in as_list(status.get("scans")):
        sc = as_dict(sc)
        done, total = sc.get("rows"), sc.get("rows_total")
        progress = num(sc.get("progress"))
        pct = f" ({progress * 100:.0f}%)" if progress is not None else ""
        eta = fmt_duration(sc.get("eta_s")) if sc.get("status") == "running" else "—"
        silent = num(sc.get("silent_s"))
        stalled = (f'<div class="err">no progress for {fmt_duration(silent)}</div>'
                   if silent is not None and silent >= SCAN_SILENT_S else "")
        rows.append(f'<tr data-scan-pair="{esc(sc.get("pair"))}" data-status="{esc(sc.get("status"))}">'
                    f'<td>{esc(sc.get("pair"))}</td>'
                    f'<td class="st-{esc(sc.get("status"))}">{esc(sc.get("status"))}{stalled}</td>'
                    f'<td class=num data-rows="{esc(done)}" data-rows-total="{esc(total)}">{fmt_number(done)} of '
                    f"{fmt_number(total) if total is not None else 'unknown'}{pct}</td>"
                    f'<td class=num data-value="{esc(sc.get("rows_per_s"))}">{fmt_number(sc.get("rows_per_s"), 0)}'
                    f'</td><td class=num data-value="{esc(sc.get("eta_s"))}">{esc(eta)}</td>'
                    f'<td class=num>{fmt_number(sc.get("chunks"))}</td><td class=num>{fmt_number(sc.get("diffs"))}</td>'
                    f"<td>{esc(fmt_time(sc.get('started_at')))}</td><td>{esc(fmt_time(sc.get('updated_at')))}</td></tr>")
    why = unavailable(status, "scans")
    table = html_table(["pair", "status", "rows done of total", "rows/s", "ETA", "chunks", "differences", "started",
                    "updated"], rows, f"n/a: {why}" if why else "no full scan yet", "scans")
    return f"<section><h2>Full scans</h2>{table}</section>"


def _job_row(attr: str, name: Any, j: Mapping[str, Any]) -> str:
    """One job run as a table row (the last-run-per-job table and the recent-runs table look alike)."""
    detail_cls = "err" if j.get("outcome") == "failed" else "detail"
    return (f'<tr {attr}="{esc(name)}"><td>{esc(name)}</td>'
            f'<td class="st-{esc(j.get("outcome"))}">{esc(j.get("outcome"))}</td>'
            f"<td>{esc(fmt_time(j.get('started_at')))}</td><td>{esc(fmt_time(j.get('finished_at')))}</td>"
            f'<td>{esc(j.get("host"))}</td><td class="{detail_cls}">{esc(j.get("detail") or "")}</td></tr>')


def _last_jobs(status: Mapping[str, Any]) -> str:
    """The last run of each scheduled job (a daily job stays visible however many runs other jobs make)."""
    rows = [_job_row("data-last-job", name, as_dict(j))
            for name, j in sorted(as_dict(status.get("last_job_runs")).items())]
    why = unavailable(status, "last_job_runs")
    table = html_table(["job", "outcome", "started", "finished", "host", "detail"], rows,
                   f"n/a: {why}" if why else "no job has run yet", "last-jobs")
    return f"<section><h2>Scheduled jobs (last run of each)</h2>{table}</section>"


def _stages(status: Mapping[str, Any], readiness: Mapping[str, bool], reasons: Mapping[str, str]) -> str:
    rows = []
    standby = role_of(status) == "standby"
    for st in as_list(status.get("stages")):
        st = as_dict(st)
        name = str(st.get("name", "?"))
        ready = st.get("ready") if isinstance(st.get("ready"), bool) else readiness.get(name)
        err = st.get("last_error")
        badge = ('<span class="badge ok">standby (runs on the leader)</span>' if standby and st.get("leader_only")
                 else html_badge(ready))
        rows.append(f'<tr data-stage="{esc(name)}"><td>{esc(name)}</td><td>{esc(st.get("status", "?"))}</td>'
                    f"<td>{badge}</td><td class=num>{fmt_number(st.get('restarts', 0))}</td>"
                    f'<td class="err">{esc(err) if err else "—"}</td></tr>')
    deps = [f'<tr data-dependency="{esc(n)}"><td>{esc(n)}</td><td>{html_badge(ok)}</td>'
            f'<td class="err">{esc(reasons.get(n, "")) if not ok else ""}</td></tr>'
            for n, ok in sorted(readiness.items()) if not any(as_dict(s).get("name") == n
                                                             for s in as_list(status.get("stages")))]
    stage_table = html_table(["stage", "status", "ready", "restarts", "last error"], rows, "no stages reported",
                         "stages")
    dep_table = html_table(["dependency / check", "state", "why not"], deps, "no dependency checks", "dependencies")
    return f"<section><h2>Stages</h2>{stage_table}{dep_table}</section>"


def _checkpoints(status: Mapping[str, Any]) -> str:
    lag = as_dict(status.get("lag"))
    secs, byts = as_dict(lag.get("source_seconds")), as_dict(lag.get("source_bytes"))
    rows = []
    cps = as_list(status.get("checkpoints"))
    sources = [str(as_dict(c).get("source", "?")) for c in cps] + [s for s in secs if s not in
                                                                  {as_dict(c).get("source") for c in cps}]
    by_source = {str(as_dict(c).get("source", "?")): as_dict(c) for c in cps}
    for source in sources:
        cp = by_source.get(source, {})
        lag_s = secs.get(source, cp.get("lag_seconds"))
        lag_b = byts.get(source, cp.get("lag_bytes"))
        pos = f"{cp.get('binlog_file', '?')}:{cp.get('binlog_pos', '?')}" if cp else "—"
        rows.append(f'<tr data-source="{esc(source)}"><td>{esc(source)}</td><td><code>{esc(pos)}</code></td>'
                    f'<td class="gtid">{esc(cp.get("gtid_set") or "—")}</td>'
                    f'<td class=num data-value="{esc(lag_s)}">{fmt_number(lag_s, 2)}</td>'
                    f'<td class=num data-value="{esc(lag_b)}">{fmt_number(lag_b)}</td>'
                    f"<td>{esc(fmt_time(cp.get('updated_at')))}</td></tr>")
    table = html_table(["source", "checkpoint", "GTID set", "lag (s)", "lag (bytes)", "saved"], rows,
                   "no checkpoint yet (the tailer has not committed a transaction)", "checkpoints")
    return f"<section><h2>Capture</h2>{table}</section>"


def _inconsistencies(status: Mapping[str, Any]) -> str:
    rows = []
    groups = sorted((as_dict(g) for g in as_list(as_dict(status.get("inconsistencies")).get("by_pair_kind"))),
                    key=lambda g: (str(g.get("pair")), str(g.get("kind")), str(g.get("status"))))
    for g in groups:
        rows.append(f'<tr data-pair="{esc(g.get("pair"))}" data-kind="{esc(g.get("kind"))}" '
                    f'data-status="{esc(g.get("status"))}"><td>{esc(g.get("pair"))}</td><td>{esc(g.get("kind"))}</td>'
                    f'<td>{esc(g.get("status"))}</td><td class=num data-value="{esc(g.get("count"))}">'
                    f"{fmt_number(g.get('count'))}</td></tr>")
    why = as_dict(status.get("inconsistencies")).get("unavailable") or unavailable(status, "ledger")
    table = html_table(["pair", "kind", "status", "count"], rows, f"n/a: {why}" if why else "no open inconsistencies",
                   "inconsistencies")
    return f"<section><h2>Inconsistencies</h2>{table}</section>"


def _repairs(status: Mapping[str, Any]) -> str:
    rows = []
    for r in as_list(status.get("recent_repairs")):
        r = as_dict(r)
        rid = r.get("repair_id")
        hint = (f"<code>cdc-repair rollback {esc(rid)}</code>" if rid and r.get("status") == "applied"
                and r.get("strategy") != "rollback" else "—")
        err = r.get("error")
        rows.append(f'<tr data-repair="{esc(rid)}"><td><code>{esc(rid)}</code></td><td>{esc(r.get("pair"))}</td>'
                    f'<td><code>{esc(r.get("pk"))}</code></td><td>{esc(r.get("strategy"))}</td>'
                    f'<td>{esc(r.get("action"))}</td><td class="st-{esc(r.get("status"))}">{esc(r.get("status"))}</td>'
                    f"<td>{esc(fmt_time(r.get('created_at')))}</td><td>{hint}"
                    f'{f"<div class=err>{esc(err)}</div>" if err else ""}</td></tr>')
    why = unavailable(status, "recent_repairs")
    table = html_table(["repair id", "pair", "key", "strategy", "action", "status", "when", "undo"], rows,
                   f"n/a: {why}" if why else "no repairs yet", "repairs")
    return f"<section><h2>Recent repairs</h2>{table}</section>"


def _jobs(status: Mapping[str, Any]) -> str:
    rows = [_job_row("data-job", as_dict(j).get("job"), as_dict(j)) for j in as_list(status.get("job_runs"))]
    why = unavailable(status, "job_runs")
    table = html_table(["job", "outcome", "started", "finished", "host", "detail"], rows,
                   f"n/a: {why}" if why else "no job runs yet", "jobs")
    return f"<section><h2>Recent job runs</h2>{table}</section>"


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:20px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:18px;margin:0}header .meta{opacity:.8;font-size:12px}
main{padding:12px 20px;max-width:1400px}
h2{font-size:15px;margin:18px 0 6px}
.cards{display:flex;gap:10px;flex-wrap:wrap}
.card{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:8px 14px;min-width:150px}
.card.warn{border-color:#e0a030;background:#fff8ea}
.card .label{font-size:12px;color:#5b6475}.card .value{font-size:22px;font-weight:600}
.card .value .detail{font-size:12px;font-weight:400;max-width:260px}
table{border-collapse:collapse;background:#fff;border:1px solid #dde1e7;margin-bottom:8px;min-width:50%}
th,td{padding:4px 10px;border-bottom:1px solid #eef0f3;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600;font-size:12px}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.badge.ok{background:#d9f2df;color:#1b6b30}.badge.bad{background:#fadcdc;color:#9b1c1c}
.badge.unknown{background:#e8eaee;color:#555}
.err{color:#9b1c1c;font-size:12px;max-width:480px;word-break:break-word}
.st-failed,.st-dirty{color:#9b1c1c;font-weight:600}.st-applied,.st-ok{color:#1b6b30}
.gtid{font-family:monospace;font-size:12px;max-width:260px;word-break:break-all}
code{font-size:12px;background:#f0f2f5;padding:1px 4px;border-radius:3px}
.empty{color:#5b6475;font-style:italic}.detail{color:#5b6475;font-size:12px}
.charts{display:flex;gap:12px;flex-wrap:wrap}.chart{background:#fff;border:1px solid #dde1e7;padding:6px}
.problems{background:#fadcdc;border:1px solid #e5a3a3;padding:8px 12px;border-radius:6px}
"""


def render_page(status: Mapping[str, Any], readiness: Mapping[str, bool], *, error: str | None = None,
                reasons: Mapping[str, str] | None = None) -> str:
    """The whole status page. `error` (the status provider failed) is shown in place of missing sections;
    `reasons` says why a dependency check fails (masked DSNs, never passwords)."""
    ready = all(readiness.values()) if readiness else None
    problems = [*(as_list(status.get("errors"))), *([error] if error else [])]
    problem_html = ("".join(f"<li>{esc(p)}</li>" for p in problems))
    banner = f'<div class="problems" id="problems"><ul>{problem_html}</ul></div>' if problems else ""
    meta = (f'host {esc(status.get("host", "?"))} · version {esc(status.get("version", "?"))} · '
            f'generated <span id="generated-at">{esc(fmt_time(status.get("generated_at")))}</span>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cdc-repair status</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<link rel="stylesheet" href="/static/uplot.min.css"><style>{_CSS}</style></head>
<body><header><h1>cdc-repair</h1><span class="meta">{meta}</span>
<span class="meta"><a style="color:#9cf" href="/api/status">/api/status</a> ·
<a style="color:#9cf" href="/metrics">/metrics</a> · <a style="color:#9cf" href="/readyz">/readyz</a></span></header>
<main><div id="numbers">{banner}{_cards(status, ready)}</div>
<section><h2>Last hour (sampled by this process)</h2><div class="charts" id="charts">
<noscript>Charts need JavaScript; every number on this page is plain HTML.</noscript></div></section>
<div id="tables">{_stages(status, readiness, reasons or {})}{_checkpoints(status)}{_inconsistencies(status)}
{_scans(status)}{_last_jobs(status)}{_repairs(status)}{_jobs(status)}</div></main>
<script src="/static/uplot.iife.min.js"></script><script src="/static/status.js" data-refresh="{REFRESH_S}"></script>
</body></html>
"""
