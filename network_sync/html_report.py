"""Building blocks of chamberd's self-contained HTML reports.

Shared by the per-observation fit report (:mod:`.fit_report`) and the comparison report
(:mod:`.compare.report`): one stylesheet, escaping, number formatting, tables, and figures
embedded as small palette PNGs in ``data:`` URIs. A report is one HTML file that opens from
a ``file://`` path with no network, no external file and no script.

Figures are drawn with matplotlib's object API (:class:`matplotlib.figure.Figure` on the
Agg canvas, never ``pyplot``: no global state, safe beside other threads) and reduced to a
palette of at most 64 colours, which makes a line plot three to four times smaller than the
full-colour PNG at the same resolution.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "CSS",
    "document",
    "esc",
    "figure_png",
    "fmt",
    "img",
    "new_figure",
    "pct",
    "software_version",
    "table",
]

#: Resolution of embedded figures [dots per inch]. At 90 dpi a 6.4 x 3.6 in figure is
#: 576 x 324 px: readable on a screen, about 8 kB as a palette PNG.
DPI = 90
#: Colours of the palette PNG.
PALETTE_COLOURS = 64

CSS = """
:root { color-scheme: light; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 0 auto; max-width: 1240px; padding: 0 16px 48px; color: #1b1b1b; }
h1 { font-size: 22px; margin: 20px 0 6px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ccc; padding-bottom: 3px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
nav { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #ddd;
      padding: 6px 0; z-index: 1; }
nav a { margin-right: 14px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 13px; }
th, td { border: 1px solid #d4d4d4; padding: 2px 7px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.bad td { background: #fff1f0; }
.muted { color: #666; }
.flags { color: #a61b1b; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.grid > figure { flex: 0 0 auto; }
.grid > div { flex: 1 1 360px; min-width: 0; }
figure { margin: 6px 0; }
figcaption { font-size: 12px; color: #555; max-width: 600px; }
img.fig { max-width: 100%; height: auto; border: 1px solid #eee; }
section.obs { padding-top: 4px; }
section.obs .back { font-size: 12px; }
details > summary { cursor: pointer; margin: 6px 0; }
pre { white-space: pre-wrap; word-break: break-all; font-size: 12px; background: #f7f7f7;
      padding: 6px; }
dl.prov { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; font-size: 13px; }
dl.prov dt { font-weight: 600; }
dl.prov dd { margin: 0; font-family: ui-monospace, monospace; word-break: break-all; }
@media print { nav { display: none; } section.obs { break-before: page; } }
"""


def esc(value: Any) -> str:
    """``value`` as HTML text (None as an empty string)."""
    return "" if value is None else html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    """A number for people: ``digits`` significant digits; "–" where missing or NaN."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return esc(value)
    if math.isnan(number):
        return "–"
    if math.isinf(number):
        return "∞" if number > 0 else "−∞"
    return format(number, f".{digits}g")


def pct(value: Any, digits: int = 3) -> str:
    """A fraction as a percentage (0.0123 -> "1.23 %"); "–" where missing."""
    if value is None:
        return "–"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(number):
        return "–"
    return f"{format(100 * number, f'.{digits}g')} %"


def table(
    headers: Sequence[str] | None,
    rows: Iterable[Sequence[Any]],
    *,
    numeric: Sequence[bool] | None = None,
    row_classes: Iterable[str] | None = None,
    caption: str | None = None,
) -> str:
    """An HTML table. Cells are HTML already (escape text with :func:`esc`); ``numeric``
    right-aligns columns."""
    out = ["<table>"]
    if caption:
        out.append(f"<caption class='muted'>{caption}</caption>")
    if headers is not None:
        out.append("<tr>" + "".join(f"<th>{h}</th>" for h in headers) + "</tr>")
    classes = iter(row_classes) if row_classes is not None else None
    for row in rows:
        cls = next(classes, "") if classes is not None else ""
        cells = []
        for i, cell in enumerate(row):
            num = numeric is not None and i < len(numeric) and numeric[i]
            cells.append(f"<td class='num'>{cell}</td>" if num else f"<td>{cell}</td>")
        attr = f" class='{cls}'" if cls else ""
        out.append(f"<tr{attr}>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def new_figure(width_in: float, height_in: float) -> Any:
    """A matplotlib Figure on the Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def figure_png(figure: Any) -> bytes:
    """The figure as a palette PNG (at most :data:`PALETTE_COLOURS` colours)."""
    from PIL import Image

    canvas = figure.canvas
    canvas.draw()
    width, height = canvas.get_width_height()
    image = Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buffer = io.BytesIO()
    image.convert("RGB").quantize(PALETTE_COLOURS).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def img(png: bytes, alt: str, *, css_class: str = "fig") -> str:
    """An ``<img>`` carrying ``png`` in a data: URI, with its size (no layout shift) and
    lazy decoding."""
    width, height = _png_size(png)
    data = base64.b64encode(png).decode("ascii")
    return (
        f"<img class='{css_class}' width='{width}' height='{height}' loading='lazy' "
        f"decoding='async' alt='{esc(alt)}' src='data:image/png;base64,{data}'>"
    )


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def document(title: str, body: str, *, nav: Sequence[tuple[str, str]] = ()) -> str:
    """A complete HTML5 page: ``<head>`` with the stylesheet, a navigation bar of
    (anchor, label) links, then ``body``."""
    links = "".join(f"<a href='#{esc(a)}'>{esc(label)}</a>" for a, label in nav)
    bar = f"<nav>{links}</nav>\n" if links else ""
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"{bar}{body}\n</body>\n</html>\n"
    )


def head(title: str, *, nav: Sequence[tuple[str, str]] = ()) -> str:
    """The start of :func:`document` up to and including the navigation bar, for reports
    written in pieces; end them with :data:`TAIL`."""
    whole = document(title, "\x00", nav=nav)
    return whole[: whole.index("\x00")]


#: The end of a document started with :func:`head`.
TAIL = "\n</body>\n</html>\n"


def software_version() -> str:
    """chamberd's installed version."""
    try:
        from importlib.metadata import version

        return version("chamberd")
    except Exception:  # pragma: no cover - only from a bare checkout
        return "0+unknown"
