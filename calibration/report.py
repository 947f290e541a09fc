"""A printable record of one calibration (``chamberd calibrate report ID [--html]``).

Built from the record as stored (:meth:`CalibrationRecords.get`): who, when, which
instrument and cylinders, the limits used and where they come from, every reading with
its cylinder and stability, the as-found and as-left state, the result. The HTML page is
self-contained (no scripts, no external files) and prints on one or two A4 pages.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

from .procedures import PROCEDURES

__all__ = ["format_record", "html_record", "summary_line"]

_HEAD = (
    ("procedure", "Procedure"),
    ("status", "Status"),
    ("result", "Result"),
    ("reason", "Reason"),
    ("operator", "Operator"),
    ("supervisor", "Supervisor"),
    ("started_at", "Started (UTC)"),
    ("ended_at", "Ended (UTC)"),
    ("analyser", "Analyser"),
    ("chamber", "Chamber"),
    ("instrument_model", "Instrument"),
    ("instrument_serial", "Serial"),
    ("instrument_firmware", "Firmware"),
    ("cylinder_ids", "Cylinders"),
    ("adjusted", "Adjusted"),
    ("software_version", "chamberd"),
    ("id", "Record id"),
)
_READING_COLUMNS = (
    ("seq", "#"),
    ("step", "step"),
    ("at", "at (UTC)"),
    ("cylinder_id", "cylinder"),
    ("reference_value", "reference"),
    ("mean", "mean"),
    ("sd", "SD"),
    ("n", "n"),
    ("drift_per_min", "drift/min"),
    ("stable_s", "stable s"),
    ("stable", "stable"),
)


def _text(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def summary_line(record: Mapping[str, Any]) -> str:
    """``3f2b9c0e  2026-07-01 04:00  zero-span-adjust  irga  pass  Li Wei``."""
    when = (record.get("started_at") or record.get("performed_at") or "")[:16].replace("T", " ")
    where = record.get("chamber") or record.get("analyser") or "-"
    return (
        f"{record['id'][:8]}  {when}  {record['procedure']:<17} {where:<8} "
        f"{(record.get('status') or '-'):<10} {record.get('operator') or '-'}"
    )


def _procedure_title(record: Mapping[str, Any]) -> str:
    procedure = PROCEDURES.get(record.get("procedure", ""))
    return f"{procedure.number}. {procedure.title}" if procedure else str(record.get("procedure"))


def _limits(record: Mapping[str, Any]) -> list[tuple[str, float, str, str]]:
    used = (record.get("data") or {}).get("limits") or {}
    procedure = PROCEDURES.get(record.get("procedure", ""))
    out = []
    for name, value in used.items():
        limit = procedure.limits.get(name) if procedure else None
        out.append((name, value, limit.unit if limit else "", limit.source if limit else ""))
    return out


def format_record(record: Mapping[str, Any]) -> str:
    """The record as plain text (for a terminal or a printer)."""
    lines = [f"Calibration record: {_procedure_title(record)}", "=" * 60]
    for key, label in _HEAD:
        if key in record:
            lines.append(f"{label:<15} {_text(record.get(key))}")
    limits = _limits(record)
    if limits:
        lines += ["", "Limits used"]
        for name, value, unit, source in limits:
            lines.append(f"  {name} = {value:g} {unit}  ({source})")
    if record.get("stability"):
        lines += ["", f"Stability rule: {json.dumps(record['stability'], sort_keys=True)}"]
    readings = record.get("readings") or []
    if readings:
        lines += ["", "Readings"]
        lines.append("  " + " ".join(f"{label:>10}" for _, label in _READING_COLUMNS))
        for r in readings:
            lines.append(
                "  " + " ".join(f"{_text(r.get(k))[:10]:>10}" for k, _ in _READING_COLUMNS)
            )
    data = dict(record.get("data") or {})
    for key in ("checks", "checks_after"):
        if data.get(key):
            lines += ["", "Checks (as found)" if key == "checks" else "Checks after adjustment"]
            for c in data[key]:
                lines.append(
                    f"  {c.get('cylinder_id')}: reference {_text(c.get('reference'))}, "
                    f"measured {_text(c.get('measured'))} at {c.get('at')}"
                )
    for key in ("commands",):
        if data.get(key):
            lines += ["", "Commands sent (each acknowledged)"]
            lines += [f"  {c['at']}  {c['command']}" for c in data[key]]
    for key, label in (("as_found", "As found"), ("as_left", "As left")):
        if record.get(key):
            lines += ["", label, "  " + json.dumps(record[key], sort_keys=True, default=str)]
    rest = {
        k: v
        for k, v in data.items()
        if k not in ("checks", "checks_after", "commands", "limits", "trace")
    }
    if rest:
        lines += ["", "Details", "  " + json.dumps(rest, sort_keys=True, default=str)[:4000]]
    return "\n".join(lines)


def html_record(record: Mapping[str, Any]) -> str:
    """The record as a self-contained, printable HTML page."""
    e = html.escape
    status = record.get("status") or "-"
    colour = {"pass": "#1b7f3b", "fail": "#b3261e", "incomplete": "#8a6d00"}.get(status, "#444")
    rows = "".join(
        f"<tr><th>{e(label)}</th><td>{e(_text(record.get(key)))}</td></tr>"
        for key, label in _HEAD
        if key in record
    )
    limits = "".join(
        f"<tr><td>{e(n)}</td><td>{v:g} {e(u)}</td><td>{e(s)}</td></tr>"
        for n, v, u, s in _limits(record)
    )
    readings = "".join(
        "<tr>" + "".join(f"<td>{e(_text(r.get(k)))}</td>" for k, _ in _READING_COLUMNS) + "</tr>"
        for r in record.get("readings") or []
    )
    head = "".join(f"<th>{e(label)}</th>" for _, label in _READING_COLUMNS)
    text = e(format_record(record))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Calibration {e(record["id"][:8])} {e(str(record.get("procedure")))}</title>
<style>
body {{ font: 11pt/1.35 system-ui, sans-serif; margin: 1.5cm; color: #222; }}
h1 {{ font-size: 16pt; margin: 0 0 .3em; }} h2 {{ font-size: 12pt; margin: 1.2em 0 .3em; }}
.status {{ color: #fff; background: {colour}; padding: .1em .6em; border-radius: .3em; }}
table {{ border-collapse: collapse; font-size: 9.5pt; }}
th, td {{ border: 1px solid #bbb; padding: .15em .4em; text-align: left; vertical-align: top; }}
th {{ background: #f2f2f2; }} pre {{ font-size: 8.5pt; white-space: pre-wrap; }}
.sign td {{ height: 2.2em; width: 14em; }}
@media print {{ body {{ margin: 1cm; }} }}
</style></head><body>
<h1>Calibration record: {e(_procedure_title(record))}
 <span class="status">{e(status.upper())}</span></h1>
<table>{rows}</table>
<h2>Limits used</h2><table><tr><th>limit</th><th>value</th><th>source</th></tr>{limits}</table>
<h2>Readings</h2><table><tr>{head}</tr>{readings}</table>
<h2>Full record</h2><pre>{text}</pre>
<h2>Signatures</h2>
<table class="sign"><tr><th>Operator</th><td></td><th>Supervisor</th><td></td></tr></table>
</body></html>
"""
