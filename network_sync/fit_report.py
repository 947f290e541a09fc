"""Per-observation diagnostics of a refit, as one self-contained HTML report.

``chamberd fit FILES --report out.html`` and ``chamberd refit ... --report out.html`` both
write it with :class:`FitReport`, the one renderer. Each fitted closure becomes an
:class:`ObservationDiagnostics` (the trace as fitted, its window, both fits, our values and
the instrument's); :func:`from_file_fit` builds it for an instrument file's observation,
:func:`from_central_fit` for a stored trace refitted centrally.

The report, in order:

- a summary: what was fitted and how (provenance), how well we agree with the instrument,
  the flags raised, the observations where we and the instrument disagree most, and the
  observations refused with their reasons;
- an index of every observation with a page (one line each, linked);
- one section ("page") per observation: the trace (closing samples, dead band and fit
  window marked), the linear and exponential fits with their residuals, our values beside
  the instrument's (flux, R2, model, samples), the QC flags with their meanings, and the
  fit's initial values and choices. Printed, each section starts a new page.

Disagreement of an observation is (ours - instrument) / max(|instrument|, MDF) for the
selected flux and for each model: the relative difference, except that a flux below the
minimal detectable flux (MDF) is compared with the MDF instead, so that near-zero fluxes,
whose relative differences are large and meaningless, do not crowd the list.

Size and time: figures are 576 x 324 px palette PNGs (about 8 kB, 11 kB in base64) embedded
in the file, drawn at about 10 per second on one core; a report holds at most
``max_pages`` pages (default :data:`MAX_PAGES`). With more observations than that, the
pages are those of the ``max_pages`` observations that disagree most (then those with the
most flags), and the summary says how many were left without a page; every observation
still counts in the summary's statistics. Memory stays bounded: only the kept pages'
traces are held until the report is written.
"""

from __future__ import annotations

import heapq
import math
import os
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chamberd.fitting import FLAGS, Closure, ClosureFit, wet_to_dry, window_mask
from chamberd.fitting.exponential import ExponentialFit
from chamberd.fitting.linear import LinearFit

from .html_report import TAIL, esc, figure_png, fmt, head, img, new_figure, pct, table

__all__ = [
    "MAX_PAGES",
    "TOP",
    "FitReport",
    "ObservationDiagnostics",
    "Side",
    "central_observer",
    "central_references",
    "disagreement",
    "from_central_fit",
    "from_file_fit",
]

#: Observations with a page in one report, by default. 1,000 pages make a file of about
#: 15 MB that a browser opens in a few seconds.
MAX_PAGES = 1000
#: Observations listed in the summary's "disagree most" table.
TOP = 50
#: Refusals listed in the summary (the count is always complete).
MAX_REFUSED = 500

_MF_UNIT = {"co2": "umol mol-1", "ch4": "nmol mol-1", "n2o": "nmol mol-1"}
_GAS = {"co2": "CO2", "ch4": "CH4", "n2o": "N2O"}


@dataclass(frozen=True)
class Side:
    """One processing's results for an observation and gas (None where it has none)."""

    label: str
    flux: float | None
    model: str | None
    lin_flux: float | None = None
    lin_r2: float | None = None
    exp_flux: float | None = None
    exp_r2: float | None = None
    n_points: int | None = None
    flags: tuple[str, ...] = ()
    #: False where the instrument reports that its exponential did not converge
    exp_converged: bool | None = None


@dataclass(frozen=True, eq=False)
class ObservationDiagnostics:
    """What one page of the report shows.

    Attributes
    ----------
    title : str
        The observation in words (file and observation, or site/system/chamber and time).
    gas : str
        ``co2``, ``ch4`` or ``n2o``.
    flux_unit : str
    elapsed_s, mole_fraction : numpy.ndarray
        The trace as fitted: time since closure [s] (negative while closing) and the dry
        mole fraction [umol mol-1 for CO2, nmol mol-1 for CH4 and N2O].
    in_window : numpy.ndarray
        True for the samples of the fit window.
    dead_band_s, end_s : float
        The fit window [s].
    ours : Side
        Our results (the fit, or the stored processing version).
    reference : Side or None
        The instrument's (or the system's own) results.
    linear, exponential : LinearFit, ExponentialFit or None
        Our fits, drawn as curves (None when the closure could not be fitted).
    mdf : float
        Minimal detectable flux [flux unit], NaN where unknown.
    details : tuple of (str, str)
        Further values shown in the page's details table (already formatted).
    note : str
        Why there is no fit, or another remark shown on the page.
    """

    title: str
    gas: str
    flux_unit: str
    elapsed_s: np.ndarray
    mole_fraction: np.ndarray
    in_window: np.ndarray
    dead_band_s: float
    end_s: float
    ours: Side
    reference: Side | None = None
    linear: LinearFit | None = None
    exponential: ExponentialFit | None = None
    mdf: float = math.nan
    details: tuple[tuple[str, str], ...] = ()
    note: str = ""


def disagreement(ours: float | None, reference: float | None, mdf: float = math.nan) -> float:
    """(ours - reference) / max(|reference|, mdf); NaN where either is missing.

    >>> round(disagreement(1.1, 1.0), 3)
    0.1
    >>> round(disagreement(0.03, 0.01, mdf=0.1), 3)  # near zero: relative to the MDF
    0.2
    """
    if ours is None or reference is None:
        return math.nan
    ours, reference = float(ours), float(reference)
    if not (math.isfinite(ours) and math.isfinite(reference)):
        return math.nan
    scale = abs(reference)
    if math.isfinite(mdf) and mdf > scale:
        scale = mdf
    return (ours - reference) / scale if scale > 0 else math.nan


@dataclass(frozen=True)
class _Differences:
    selected: float
    linear: float
    exponential: float

    @classmethod
    def of(cls, d: ObservationDiagnostics) -> _Differences:
        ref = d.reference
        if ref is None:
            return cls(math.nan, math.nan, math.nan)
        return cls(
            disagreement(d.ours.flux, ref.flux, d.mdf),
            disagreement(d.ours.lin_flux, ref.lin_flux, d.mdf),
            disagreement(d.ours.exp_flux, ref.exp_flux, d.mdf),
        )


@dataclass
class _Page:
    seq: int
    diag: ObservationDiagnostics
    diff: _Differences

    @property
    def anchor(self) -> str:
        return f"o{self.seq + 1}"

    @property
    def priority(self) -> tuple[float, int, int]:
        """Larger = more worth a page: disagreement, then flags, then earlier."""
        score = abs(self.diff.selected)
        return (score if math.isfinite(score) else -1.0, len(self.diag.ours.flags), -self.seq)

    def __lt__(self, other: _Page) -> bool:
        return self.priority < other.priority


@dataclass
class _Totals:
    observations: int = 0
    with_reference: int = 0
    selected: list[float] = field(default_factory=list)
    linear: list[float] = field(default_factory=list)
    exponential: list[float] = field(default_factory=list)
    model_n: int = 0
    model_same: int = 0
    flags: Counter[str] = field(default_factory=Counter)
    flagged: int = 0
    not_fitted: int = 0


class FitReport:
    """Collects observations' diagnostics, then writes the HTML report.

    Parameters
    ----------
    path : str or path-like
        The HTML file to write (atomically: a temporary file renamed over it).
    title : str
        The report's title.
    provenance : sequence of (str, str)
        What was fitted and how (command, files or database, settings, chamberd version,
        time), shown at the top.
    max_pages : int
        At most this many observations get a page (see the module notes).
    reference : str
        What the reference values are, in words: ``instrument`` (``chamberd fit``) or
        ``system`` (the observation's own processing, ``chamberd refit``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        title: str,
        provenance: Sequence[tuple[str, str]] = (),
        max_pages: int = MAX_PAGES,
        reference: str = "instrument",
    ) -> None:
        if max_pages < 1:
            raise ValueError(f"max_pages must be >= 1, got {max_pages}")
        self.path = Path(path)
        self.title = title
        self.provenance = list(provenance)
        self.max_pages = max_pages
        self.reference = reference
        self._pages: list[_Page] = []  # a min-heap by priority
        self._totals = _Totals()
        self._refused: list[str] = []
        self._refused_count = 0

    def add(self, diag: ObservationDiagnostics) -> None:
        """Count one observation's diagnostics and keep its page if it is among the
        ``max_pages`` most worth one."""
        totals = self._totals
        seq = totals.observations
        totals.observations += 1
        diff = _Differences.of(diag)
        if diag.reference is not None:
            totals.with_reference += 1
            for name in ("selected", "linear", "exponential"):
                value = getattr(diff, name)
                if name == "exponential" and diag.reference.exp_converged is False:
                    continue  # an exponential the instrument itself did not converge on
                if math.isfinite(value):
                    getattr(totals, name).append(abs(value))
            if diag.reference.model and diag.ours.model:
                totals.model_n += 1
                totals.model_same += diag.reference.model == diag.ours.model
        totals.flags.update(diag.ours.flags)
        totals.flagged += bool(diag.ours.flags)
        totals.not_fitted += diag.linear is None
        page = _Page(seq, diag, diff)
        if len(self._pages) < self.max_pages:
            heapq.heappush(self._pages, page)
        elif self._pages[0] < page:
            heapq.heapreplace(self._pages, page)

    def refuse(self, message: str) -> None:
        """Record an observation or file that was refused (not fitted), with the reason."""
        self._refused_count += 1
        if len(self._refused) < MAX_REFUSED:
            self._refused.append(message)

    @property
    def observations(self) -> int:
        return self._totals.observations

    def write(self, *, notes: Iterable[str] = ()) -> Path:
        """Draw every kept page's figure and write the report; ``notes`` are extra lines
        for the summary (the command's own agreement summary, say)."""
        from chamberd.controller.output import open_output

        pages = sorted(self._pages, key=lambda p: p.seq)
        nav = [("summary", "Summary"), ("disagree", "Disagree most"), ("index", "Index")]
        with open_output(os.fspath(self.path)) as out:
            out.write(head(self.title, nav=nav))
            out.write(self._summary(pages, list(notes)))
            out.write(self._index(pages))
            drawing = _TraceFigure()
            for page in pages:
                out.write(_section(page, drawing))
            out.write(TAIL)
        return self.path

    # --- summary ---------------------------------------------------------------------

    def _summary(self, pages: list[_Page], notes: list[str]) -> str:
        t = self._totals
        ref = esc(self.reference)
        parts = [f"<h1>{esc(self.title)}</h1>", "<section id='summary'>", "<h2>Summary</h2>"]
        if self.provenance:
            parts.append(
                "<dl class='prov'>"
                + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in self.provenance)
                + "</dl>"
            )
        paged = (
            f"Each has a page below ({len(pages)})"
            if len(pages) == t.observations
            else f"{len(pages)} have a page below: those that disagree most with the "
            f"{ref}, then those with the most flags; {t.observations - len(pages)} "
            "are counted here without a page"
        )
        parts.append(
            f"<p>{t.observations} observation(s) fitted, {t.with_reference} with the "
            f"{ref}'s own results; {self._refused_count} refused. {paged}.</p>"
        )
        parts.extend(f"<p class='muted'>{esc(n)}</p>" for n in notes)
        rows = []
        for label, values in (
            ("selected flux", t.selected),
            ("linear flux", t.linear),
            ("exponential flux", t.exponential),
        ):
            if values:
                within = sum(v <= 0.02 for v in values) / len(values)
                rows.append(
                    [
                        label,
                        str(len(values)),
                        pct(statistics.median(values)),
                        pct(within),
                        pct(max(values)),
                    ]
                )
            else:
                rows.append([label, "0", "–", "–", "–"])
        parts.append(f"<h3>Agreement with the {ref}</h3>")
        parts.append(
            table(
                ["", "n", "median |difference|", "within 2 %", "largest |difference|"],
                rows,
                numeric=[False, True, True, True, True],
                caption=f"difference = (ours − {ref}) / max(|{ref}|, MDF); "
                f"exponential: except where the {ref} reports its own did not converge",
            )
        )
        if t.model_n:
            parts.append(f"<p>Model choice as the {ref}'s: {t.model_same} of {t.model_n}.</p>")
        parts.append("<h3>Flags</h3>")
        if t.flags:
            parts.append(
                table(
                    ["flag", "observations", "meaning"],
                    [
                        [f"<span class='flags'>{esc(k)}</span>", str(n), esc(_flag_meaning(k))]
                        for k, n in sorted(t.flags.items(), key=lambda kv: (-kv[1], kv[0]))
                    ],
                    numeric=[False, True, False],
                    caption=f"{t.flagged} of {t.observations} observation(s) flagged; "
                    "flags never change a flux",
                )
            )
        else:
            parts.append("<p>No observation flagged.</p>")
        if t.not_fitted:
            parts.append(f"<p>{t.not_fitted} observation(s) could not be fitted (see pages).</p>")
        parts.append(self._top(pages))
        if self._refused_count:
            parts.append(f"<h3>Refused ({self._refused_count})</h3><ul>")
            parts.extend(f"<li>{esc(m)}</li>" for m in self._refused)
            if self._refused_count > len(self._refused):
                parts.append(f"<li>… {self._refused_count - len(self._refused)} more</li>")
            parts.append("</ul>")
        parts.append("</section>")
        return "\n".join(parts)

    def _top(self, pages: list[_Page]) -> str:
        ranked = sorted(
            (p for p in pages if math.isfinite(p.diff.selected)),
            key=lambda p: (-abs(p.diff.selected), p.seq),
        )[:TOP]
        ref = esc(self.reference)
        title = f"<h3 id='disagree'>Where we and the {ref} disagree most (top {TOP})</h3>"
        if not ranked:
            return title + f"<p>No observation has the {ref}'s own results.</p>"
        return title + _overview_table(ranked, ranked=True, reference=self.reference)

    def _index(self, pages: list[_Page]) -> str:
        body = (
            _overview_table(pages, ranked=False, reference=self.reference)
            if pages
            else "<p>No observation.</p>"
        )
        return (
            "<section id='index'><h2>Index</h2>"
            f"<details open><summary>{len(pages)} observation(s), in the order fitted"
            f"</summary>{body}</details></section>\n"
        )


def _overview_table(pages: Sequence[_Page], *, ranked: bool, reference: str) -> str:
    headers = [
        "#",
        "observation",
        "gas",
        "ours",
        "model",
        esc(reference),
        "model",
        "difference",
        "linear",
        "exponential",
        "flags",
    ]
    rows, classes = [], []
    for p in pages:
        d, ref = p.diag, p.diag.reference
        rows.append(
            [
                f"<a href='#{p.anchor}'>{p.seq + 1}</a>",
                f"<a href='#{p.anchor}'>{esc(d.title)}</a>",
                esc(_GAS.get(d.gas, d.gas)),
                fmt(d.ours.flux),
                esc(d.ours.model or "–"),
                fmt(ref.flux) if ref else "–",
                esc(ref.model or "–") if ref else "–",
                pct(p.diff.selected),
                pct(p.diff.linear),
                pct(p.diff.exponential),
                f"<span class='flags'>{esc(' '.join(d.ours.flags))}</span>",
            ]
        )
        classes.append("bad" if abs(p.diff.selected) > 0.1 else "")
    return table(
        headers,
        rows,
        numeric=[True, False, False, True, False, True, False, True, True, True, False],
        row_classes=classes,
        caption=f"fluxes in each gas's flux unit; differences (ours − {esc(reference)}) / "
        f"max(|{esc(reference)}|, MDF); rows beyond 10 % shaded"
        + ("; largest first" if ranked else ""),
    )


def _flag_meaning(flag: str) -> str:
    return FLAGS.get(flag) or _CENTRAL_FLAGS.get(flag, "")


_CENTRAL_FLAGS = {
    "assumed_ptw": "pressure or temperature assumed (the trace has none in its first 10 s)",
    "exp_not_converged": "the exponential did not converge (stored flagged by the refit)",
}


# --- one page ---------------------------------------------------------------------------


def _section(page: _Page, drawing: _TraceFigure) -> str:
    d = page.diag
    ours, ref = d.ours, d.reference
    png = drawing.draw(d)
    caption = (
        "Points: closing (t < 0) light grey, dead band and after the window grey, fit window "
        "black (shaded). Lines: our linear (blue) and exponential (red) fits; below, their "
        "residuals in the window."
    )
    rows = [
        [
            "flux (selected)",
            _flux(ours.flux, ours.model),
            _flux(ref.flux, ref.model) if ref else "",
        ],
        ["linear flux", fmt(ours.lin_flux), fmt(ref.lin_flux) if ref else ""],
        ["linear R²", fmt(ours.lin_r2), fmt(ref.lin_r2) if ref else ""],
        ["exponential flux", fmt(ours.exp_flux), fmt(ref.exp_flux) if ref else ""],
        ["exponential R²", fmt(ours.exp_r2), fmt(ref.exp_r2) if ref else ""],
        ["samples in window", fmt(ours.n_points), fmt(ref.n_points) if ref else ""],
    ]
    if ref is not None:
        for name, value in (
            ("selected", page.diff.selected),
            ("linear", page.diff.linear),
            ("exponential", page.diff.exponential),
        ):
            rows.append([f"difference, {name}", pct(value), ""])
    headers = ["", esc(ours.label), esc(ref.label) if ref else "reference"]
    values = table(headers, rows, numeric=[False, True, True], caption=esc(d.flux_unit))
    if ours.flags:
        flags = "<ul class='flags'>" + "".join(
            f"<li><b>{esc(f)}</b>: {esc(_flag_meaning(f))}</li>" for f in ours.flags
        )
        flags += "</ul>"
    else:
        flags = "<p class='muted'>no flags</p>"
    ref_flags = (
        f"<p class='muted'>{esc(ref.label)} flags: {esc(' '.join(ref.flags))}</p>"
        if ref is not None and ref.flags
        else ""
    )
    details = table(None, [[esc(k), esc(v)] for k, v in d.details]) if d.details else ""
    note = f"<p class='flags'>{esc(d.note)}</p>" if d.note else ""
    t = np.asarray(d.elapsed_s, dtype=float)
    left_out = int(np.count_nonzero(~(_plottable(t) & _plottable(np.asarray(d.mole_fraction)))))
    if left_out:
        note += (
            f"<p class='flags'>{left_out} of {t.size} samples not drawn: missing, not finite "
            f"or beyond ±{PLOTTABLE:g}</p>"
        )
    return (
        f"<section class='obs' id='{page.anchor}'>\n"
        f"<h2>{page.seq + 1}. {esc(d.title)} · {esc(_GAS.get(d.gas, d.gas))}</h2>\n{note}"
        "<div class='grid'>"
        f"<figure>{img(png, f'trace and fits of {d.title}')}"
        f"<figcaption>{caption}</figcaption></figure>"
        f"<div>{values}{flags}{ref_flags}{details}</div></div>\n"
        "<p class='back'><a href='#summary'>summary</a> · <a href='#index'>index</a></p>\n"
        "</section>\n"
    )


def _flux(value: float | None, model: str | None) -> str:
    return f"{fmt(value)} ({esc(model)})" if model else fmt(value)


class _TraceFigure:
    """The figure of a page: trace, window and both fits above; the fits' residuals in the
    window below. One figure serves every page: its artists are made once and only their
    data, labels and limits change from page to page (about twice as fast as a new
    figure per page)."""

    def __init__(self) -> None:
        from matplotlib.ticker import MaxNLocator

        self.figure = new_figure(6.4, 3.6)
        top, bottom = self.figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        self.top, self.bottom = top, bottom
        self.figure.subplots_adjust(left=0.12, right=0.98, top=0.97, bottom=0.13, hspace=0.08)
        bottom.set_xlabel("elapsed time since closure [s]", fontsize=7)
        bottom.set_ylabel("residual", fontsize=7)
        for axis, ticks in ((top, 5), (bottom, 3)):
            axis.tick_params(labelsize=7)
            axis.yaxis.set_major_locator(MaxNLocator(ticks))
            axis.yaxis.get_major_formatter().set_useOffset(False)
        self.spans = [axis.axvspan(0.0, 1.0, color="0.92", lw=0) for axis in (top, bottom)]
        self.closure_line = top.axvline(0.0, color="0.6", lw=0.8, ls=":")
        bottom.axhline(0.0, color="0.6", lw=0.8)
        (self.closing,) = top.plot([], [], ".", ms=3, color="0.78", label="closing")
        (self.outside,) = top.plot([], [], ".", ms=3, color="0.5", label="dead band, outside")
        (self.window,) = top.plot([], [], ".", ms=3, color="k", label="fit window")
        self.curves = {
            name: top.plot([], [], "-", color=colour, label=name)[0]
            for name, colour in (("linear", "tab:blue"), ("exponential", "tab:red"))
        }
        self.residuals = {
            name: bottom.plot([], [], ".", ms=2, color=line.get_color())[0]
            for name, line in self.curves.items()
        }
        self.legend = top.legend(fontsize=7, loc="lower right", frameon=False)

    def draw(self, d: ObservationDiagnostics) -> bytes:
        top, bottom = self.top, self.bottom
        t = np.asarray(d.elapsed_s, dtype=float)
        y = np.asarray(d.mole_fraction, dtype=float)
        ok = _plottable(t) & _plottable(y)
        inside = ok & d.in_window
        closing = ok & (t < 0)
        outside = ok & ~inside & ~closing
        has_window = bool(_plottable(np.array([d.dead_band_s, d.end_s])).all())
        for span in self.spans:
            span.set_visible(has_window)
            if has_window:
                span.set_x(d.dead_band_s)
                span.set_width(d.end_s - d.dead_band_s)
        self.closure_line.set_visible(bool(closing.any()))
        self.closing.set_data(t[closing], y[closing])
        self.outside.set_data(t[outside], y[outside])
        self.window.set_data(t[inside], y[inside])
        if has_window:
            end = d.end_s
        else:
            end = float(np.max(t[ok])) if ok.any() else 1.0
        grid = np.linspace(0.0, end, 200)
        fits = (
            ("linear", d.linear, d.ours.lin_flux, d.ours.lin_r2),
            ("exponential", d.exponential, d.ours.exp_flux, d.ours.exp_r2),
        )
        labels = [line.get_label() for line in (self.closing, self.outside, self.window)]
        for name, fit, flux, r2 in fits:
            curve, residual = self.curves[name], self.residuals[name]
            chosen = d.ours.model == name
            label = f"{name}{' (selected)' if chosen else ''}: {fmt(flux)}, R² {fmt(r2)}"
            if fit is None or not _drawable(fit):
                curve.set_data([], [])
                residual.set_data([], [])
                label = f"{name}: not fitted"
            else:
                with np.errstate(all="ignore"):
                    values = fit.curve_mf(grid)
                    misfit = y[inside] - fit.curve_mf(t[inside])
                shown, kept = _plottable(values), _plottable(misfit)
                curve.set_data(grid[shown], values[shown])
                residual.set_data(t[inside][kept], misfit[kept])
            curve.set_linewidth(1.8 if chosen else 1.1)
            labels.append(label)
        for text, label in zip(self.legend.get_texts(), labels, strict=True):
            text.set_text(label)
        top.set_ylabel(f"dry {_GAS.get(d.gas, d.gas)} [{_MF_UNIT.get(d.gas, '')}]", fontsize=7)
        for axis in (top, bottom):
            axis.relim(visible_only=True)
            axis.autoscale_view()
        if not any(len(r.get_xdata()) for r in self.residuals.values()):
            bottom.set_ylim(-1.0, 1.0)  # no residuals: not a range around the zero line
        # the legend where the trace is not: below a rising trace, above a falling one
        shown = inside if inside.sum() > 1 else ok
        rising = shown.sum() > 1 and y[shown][-1] >= y[shown][0]
        self.legend.set_loc("lower right" if rising else "upper right")
        return figure_png(self.figure)


#: Beyond this magnitude a value is not drawn (a logger's 1e308 would break the axis
#: scaling); the page counts the samples left out.
PLOTTABLE = 1e12


def _plottable(values: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.isfinite(values) & (np.abs(values) < PLOTTABLE)


def _drawable(fit: LinearFit | ExponentialFit) -> bool:
    if isinstance(fit, ExponentialFit):
        return math.isfinite(fit.a_per_s) and math.isfinite(fit.slope_at_ref_mf_s)
    return math.isfinite(fit.slope_mf_s) and math.isfinite(fit.intercept_mf)


# --- builders ---------------------------------------------------------------------------


def _trace(closure: Closure) -> tuple[np.ndarray, np.ndarray]:
    """The closure's time and dry mole fraction, as the fit sees them."""
    t = np.asarray(closure.elapsed_s, dtype=float).ravel()
    c = np.asarray(closure.mole_fraction, dtype=float).ravel()
    if closure.dry:
        return t, c
    w = np.asarray(closure.h2o_mmol_mol, dtype=float)
    with np.errstate(all="ignore"):
        return t, wet_to_dry(c, w if w.ndim == 0 else w.ravel())


def _fit_details(fit: ClosureFit) -> list[tuple[str, str]]:
    out = [
        ("fit window", f"{fmt(fit.dead_band_s)} to {fmt(fit.end_s)} s"),
        ("model choice", fit.model_reason),
        ("C′0 (initial dry mole fraction)", fmt(fit.c0_mf, 6)),
        (
            "P0, T0, W0",
            f"{fmt(fit.pressure_kpa)} kPa, {fmt(fit.temperature_degc)} °C, "
            f"{fmt(fit.h2o_mmol_mol)} mmol mol-1",
        ),
        ("exponential curvature a", f"{fmt(fit.exponential.a_per_s)} s-1"),
        (
            "flux standard errors, linear and exponential",
            f"{fmt(fit.lin_flux_se)}, {fmt(fit.exp_flux_se)}",
        ),
        ("minimal detectable flux", fmt(fit.mdf)),
        ("g factor |exp / lin|", fmt(fit.g_factor)),
    ]
    return out


def from_file_fit(
    obs: Any, closure: Closure, fit: ClosureFit, row: Mapping[str, Any]
) -> ObservationDiagnostics:
    """Diagnostics of one gas of an instrument file's observation, as ``chamberd fit``
    fitted it (``obs`` a :class:`~chamberd.network_sync.formats.ChamberObservation`,
    ``row`` its output row)."""
    t, y = _trace(closure)
    gas = row["gas"]
    ours = Side(
        "chamberd",
        fit.flux,
        fit.model,
        lin_flux=fit.lin_flux,
        lin_r2=fit.linear.r_squared,
        exp_flux=fit.exp_flux,
        exp_r2=fit.exponential.r_squared,
        n_points=fit.n_points,
        flags=tuple(fit.flags),
    )
    ref_values = obs.reference.get(gas)
    reference = None
    details = _fit_details(fit)
    if row.get("dead_band_reason"):
        details.append(("dead band", str(row["dead_band_reason"])))
    if ref_values is not None:
        reference = Side(
            f"instrument ({obs.instrument})",
            ref_values.flux,
            ref_values.model,
            lin_flux=ref_values.lin_flux,
            lin_r2=ref_values.lin_r2,
            exp_flux=ref_values.exp_flux,
            exp_r2=ref_values.exp_r2,
            n_points=ref_values.n_points,
            exp_converged=ref_values.exp_converged if ref_values.exp_flux is not None else None,
        )
        if ref_values.exp_flux is not None:
            details.append(
                ("instrument's exponential converged", "yes" if ref_values.exp_converged else "no")
            )
    parts = [f"{row['source_file']} · observation {row['observation']}"]
    if row.get("port") is not None:
        parts.append(f"port {row['port']}")
    if row.get("label"):
        parts.append(str(row["label"]))
    if row.get("start_time"):
        parts.append(str(row["start_time"]))
    return ObservationDiagnostics(
        title=" · ".join(parts),
        gas=gas,
        flux_unit=row["flux_unit"],
        elapsed_s=t,
        mole_fraction=y,
        in_window=window_mask(
            t, dead_band_s=fit.dead_band_s, end_s=fit.end_s, start_exclusive=closure.start_exclusive
        ),
        dead_band_s=fit.dead_band_s,
        end_s=fit.end_s,
        ours=ours,
        reference=reference,
        linear=fit.linear,
        exponential=fit.exponential,
        mdf=fit.mdf,
        details=tuple(details),
    )


def from_central_fit(
    observation: Mapping[str, Any],
    closure: Closure,
    fit: ClosureFit | ValueError,
    stored: Mapping[str, Any] | None,
    *,
    gas: str,
    processing_version: str,
    method: str,
    reference: Sequence[Mapping[str, Any]] = (),
) -> ObservationDiagnostics:
    """Diagnostics of one stored trace refitted centrally.

    ``observation`` is its row (uuid, site_id, system_id, chamber, begin_utc, ...),
    ``fit`` the fit of the refit (or why it failed), ``stored`` the flux row the refit
    stored (None when skipped), ``reference`` the observation's flux rows of the gas in
    one other processing version (the instrument's, or the system's own).
    """
    from .sync import FLUX_UNITS

    t, y = _trace(closure)
    title = (
        f"{observation['site_id']}/{observation['system_id']}/{observation['chamber']} · "
        f"{_time(observation['begin_utc'])}"
    )
    where = (("observation uuid", str(observation["uuid"])),)
    unit = FLUX_UNITS[gas]
    if isinstance(fit, ValueError):
        empty = np.zeros(t.shape, dtype=bool)
        return ObservationDiagnostics(
            title=title,
            gas=gas,
            flux_unit=unit,
            elapsed_s=t,
            mole_fraction=y,
            in_window=empty,
            dead_band_s=math.nan,
            end_s=math.nan,
            ours=Side(processing_version, None, None, flags=("not_fitted",)),
            reference=_reference_side(reference),
            details=where,
            note=f"not fitted: {fit}",
        )
    flags = list(stored["flags"].split(";")) if stored and stored.get("flags") else []
    flags += [f for f in fit.flags if f not in flags]
    ours = Side(
        processing_version,
        stored["flux"] if stored else None,
        method if stored else None,
        lin_flux=fit.lin_flux,
        lin_r2=fit.linear.r_squared,
        exp_flux=fit.exp_flux,
        exp_r2=fit.exponential.r_squared,
        n_points=fit.n_points,
        flags=tuple(flags),
    )
    note = "" if stored else f"skipped: the {method} fit gave no flux"
    return ObservationDiagnostics(
        title=title,
        gas=gas,
        flux_unit=unit,
        elapsed_s=t,
        mole_fraction=y,
        in_window=window_mask(t, dead_band_s=fit.dead_band_s, end_s=fit.end_s),
        dead_band_s=fit.dead_band_s,
        end_s=fit.end_s,
        ours=ours,
        reference=_reference_side(reference),
        linear=fit.linear,
        exponential=fit.exponential,
        mdf=fit.mdf,
        details=(*where, *_fit_details(fit)),
        note=note,
    )


def _reference_side(rows: Sequence[Mapping[str, Any]]) -> Side | None:
    """One processing version's flux rows of an observation and gas as a Side."""
    if not rows:
        return None
    by_model = {r["model"]: r for r in rows}
    chosen = next((r for r in rows if r.get("selected")), None)
    lin, exp = by_model.get("linear"), by_model.get("exponential")
    flags = {f for r in rows for f in (r.get("flags") or "").split(";") if f}
    return Side(
        rows[0]["processing_version"],
        _num(chosen["flux"]) if chosen else None,
        chosen["model"] if chosen else None,
        lin_flux=_num(lin["flux"]) if lin else None,
        lin_r2=_num(lin["r2"]) if lin else None,
        exp_flux=_num(exp["flux"]) if exp else None,
        exp_r2=_num(exp["r2"]) if exp else None,
        n_points=(chosen or rows[0]).get("n_points"),
        flags=tuple(sorted(flags)),
    )


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _time(value: Any) -> str:
    """A stored UTC instant (a datetime, or ISO 8601 text) as ``2018-03-21 15:31:51 UTC``."""
    import datetime as dt

    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return (
            value.strftime("%Y-%m-%d %H:%M:%S")
            + (f".{value.microsecond // 1000:03d}" if value.microsecond else "")
            + " UTC"
        )
    return str(value)


def central_references(
    central: Any, uuids: Sequence[str], *, gas: str
) -> dict[str, list[dict[str, Any]]]:
    """Each observation's flux rows of ``gas`` in its own processing: the version
    ``instrument`` where it has one, else the first other version by name that is not a
    central refit (``site-1``, ``cosore``, ``manual``)."""
    if not uuids:
        return {}
    rows = central.query(
        "SELECT observation_uuid, model, processing_version, flux, r2, n_points, selected, "
        "flags FROM fluxes WHERE gas = ? AND processing_version NOT LIKE 'central-%' "
        f"AND observation_uuid IN ({', '.join('?' for _ in uuids)}) "
        "ORDER BY observation_uuid, processing_version, model",
        [gas, *uuids],
    )
    versions: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for row in rows:
        by_version = versions.setdefault(row["observation_uuid"], {})
        by_version.setdefault(row["processing_version"], []).append(dict(row))
    out = {}
    for uuid, by_version in versions.items():
        chosen = "instrument" if "instrument" in by_version else min(by_version)
        out[uuid] = by_version[chosen]
    return out


def central_observer(
    report: FitReport, central: Any, *, gas: str, processing_version: str, method: str
) -> Any:
    """The ``observe`` callback of :func:`chamberd.network_sync.central_refit.refit` that
    adds each refitted observation, with its own processing's fluxes, to ``report``."""

    def observe(chunk: Sequence[Any]) -> None:
        references = central_references(central, [r.observation["uuid"] for r in chunk], gas=gas)
        for r in chunk:
            report.add(
                from_central_fit(
                    r.observation,
                    r.closure,
                    r.fit,
                    r.stored,
                    gas=gas,
                    processing_version=processing_version,
                    method=method,
                    reference=references.get(r.observation["uuid"], ()),
                )
            )

    return observe
