"""``chamberd plot``: one observation's traces with their fitted curves and windows.

One panel per gas the observation measured (CO2, then CH4 and N2O on a site with trace-gas
analysers in the loop), each on its own axis in its own unit: a CO2 mole fraction in
umol mol-1 and a CH4 one in nmol mol-1 never share a scale. A CO2-only observation is one
panel, as before.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from chamberd.fitting import FitSettings, fit_closure

from .cycle import GASES, MOLE_FRACTION_UNITS
from .errors import ConfigError, StorageError
from .store import SiteStore

__all__ = ["PLOT_GASES", "observation_figure", "plot_observation"]

#: the gases plotted, in panel order: gas, its sample column, its mole-fraction unit
PLOT_GASES = tuple((gas, column, MOLE_FRACTION_UNITS[gas]) for gas, column, _, _ in GASES)
_MIN_SAMPLES = 4


def plot_observation(
    store: SiteStore, uuid: str, output: str | Path, *, precision: float = 1.0
) -> Path:
    """Write a PNG of observation ``uuid``: per gas measured, its dry mole fraction against
    elapsed time, the fit window, the linear and exponential fits, the reported flux and
    flags (see :func:`observation_figure`)."""
    import matplotlib.pyplot as plt

    figure = observation_figure(store, uuid, precision=precision)
    path = Path(output)
    try:
        figure.savefig(path)
    finally:
        plt.close(figure)
    return path


def observation_figure(store: SiteStore, uuid: str, *, precision: float = 1.0) -> Any:
    """The matplotlib figure of observation ``uuid``: one panel (axis) per gas with at
    least four samples, CO2 first. The caller closes it (``pyplot.close``).

    ConfigError for an unknown observation, StorageError when no gas has samples enough."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = store.query("SELECT * FROM observations WHERE uuid = ?", (uuid,))
    if not rows:
        raise ConfigError(f"no observation {uuid!r} in {store.path}")
    obs = rows[0]
    samples = store.query("SELECT * FROM samples WHERE observation_uuid = ? ORDER BY seq", (uuid,))
    traces = [(gas, column, unit, _trace(samples, column)) for gas, column, unit in PLOT_GASES]
    traces = [t for t in traces if t[3] is not None]
    if not traces:
        raise StorageError(f"observation {uuid} has {len(samples)} samples: nothing to plot")
    fluxes: dict[str, dict[str, dict[str, Any]]] = {}
    for f in store.query("SELECT * FROM fluxes WHERE observation_uuid = ?", (uuid,)):
        fluxes.setdefault(f["gas"] or "co2", {})[f["model"]] = f
    pressures = [s["cell_pressure_kpa"] for s in samples if s["cell_pressure_kpa"] is not None]
    # the chamber's pressure: the NDIR cell's (a laser's cavity pressure is never stored
    # as cell_pressure_kpa), else the observation's ancillary mean
    pressure = float(np.mean(pressures)) if pressures else obs["pressure_kpa"]
    temperature = obs["air_temperature_degc"] or obs["soil_temperature_degc"]

    header = f"{obs['chamber']}  {obs['started_at']}  {obs['status']}"
    if len(traces) == 1:
        figure, axis = plt.subplots(figsize=(8, 4.5), dpi=110)
        axes = [axis]
    else:
        figure, grid_axes = plt.subplots(
            len(traces), 1, figsize=(8, 1.2 + 3.0 * len(traces)), dpi=110, sharex=True
        )
        axes = list(grid_axes)
        figure.suptitle(header + (f"\n{obs['reason']}" if obs["reason"] else ""), fontsize=9)
    for axis, (gas, _column, unit, (t, moist, h2o, p)) in zip(axes, traces, strict=True):
        gas_fluxes = fluxes.get(gas, {})
        window = gas_fluxes.get("linear") or gas_fluxes.get("exponential") or {}
        if gas == "co2" or not window:
            dead_band = obs["dead_band_s"] or 0.0
            end = obs["observation_s"] or float(np.nanmax(t))
        else:
            dead_band = window["dead_band_s"] or 0.0
            end = window["end_s"] or obs["observation_s"] or float(np.nanmax(t))
        if p is None:
            p = pressure
        fit: Any = None
        if p is not None and temperature is not None and obs["volume_cm3"]:
            try:
                fit = fit_closure(
                    t,
                    moist,
                    h2o_mmol_mol=h2o,
                    pressure_kpa=p,
                    temperature_degc=temperature,
                    volume_cm3=obs["volume_cm3"],
                    area_cm2=obs["area_cm2"],
                    dead_band_s=dead_band,
                    end_s=end,
                    precision_mf=precision,
                    settings=FitSettings(),
                )
            except ValueError:  # e.g. no sample in the first seconds: the trace alone
                fit = None
        name = gas.upper()
        dry = moist / (1 - h2o / 1000)
        inside = (t >= dead_band) & (t <= end)
        axis.axvspan(dead_band, end, color="0.93", label="fit window")
        selected = next((f for f in gas_fluxes.values() if f["selected"]), None)
        if selected is not None and selected["model"] == "diffusive":
            axis.axvspan(
                selected["dead_band_s"],
                selected["end_s"],
                color="tab:green",
                alpha=0.12,
                label="diffusive part",
            )
        axis.plot(t[~inside], dry[~inside], ".", color="0.6", ms=4, label="outside the window")
        axis.plot(t[inside], dry[inside], ".", color="k", ms=4, label=f"dry {name}")
        grid = np.linspace(0, end, 300)
        if fit is not None:
            if fit.linear.converged:
                axis.plot(
                    grid,
                    fit.linear.curve_mf(grid),
                    "-",
                    color="tab:blue",
                    label=f"linear {fit.lin_flux:.3f}",
                )
            if math.isfinite(fit.exponential.a_per_s):
                axis.plot(
                    grid,
                    fit.exponential.curve_mf(grid),
                    "-",
                    color="tab:red",
                    label=f"exponential {fit.exp_flux:.3f}",
                )
        line = ""
        if selected is not None and selected["flux"] is not None:
            line = f"flux {selected['flux']:.3f} {selected['flux_unit']} ({selected['model']})"
            if selected["flags"]:
                line += f"  flags: {selected['flags']}"
        if len(traces) == 1:
            title = header + (f"\n{line}" if line else "")
            if obs["reason"]:
                title += f"\n{obs['reason']}"
            axis.set_title(title, fontsize=9)
        else:
            axis.set_title(f"{name}  {line}" if line else name, fontsize=9)
        if len(traces) == 1 or axis is axes[-1]:
            axis.set_xlabel("elapsed time since closure [s]")
        axis.set_ylabel(f"dry {name} [{unit}]")
        axis.legend(fontsize=8, loc="best")
    figure.tight_layout()
    return figure


def _trace(
    samples: list[dict[str, Any]], column: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None] | None:
    """The rows of ``samples`` reporting ``column``: elapsed time, the (moist) mole
    fraction, their own H2O (0 where none) and cell pressure (None unless every row has
    one); None with fewer than four such rows."""
    rows = [s for s in samples if s.get(column) is not None]
    if len(rows) < _MIN_SAMPLES:
        return None
    t = np.array([np.nan if s["elapsed_s"] is None else s["elapsed_s"] for s in rows], float)
    values = np.array([s[column] for s in rows], dtype=float)
    h2o = np.array([0.0 if s["h2o_mmol_mol"] is None else s["h2o_mmol_mol"] for s in rows])
    pressure = [s["cell_pressure_kpa"] for s in rows]
    p = None if any(v is None for v in pressure) else np.array(pressure, dtype=float)
    return t, values, h2o, p
