"""``chamberd plot``: one observation's trace with its fitted curves and window."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from chamberd.fitting import FitSettings, fit_closure

from .errors import ConfigError, StorageError
from .store import SiteStore

__all__ = ["plot_observation"]


def plot_observation(
    store: SiteStore, uuid: str, output: str | Path, *, precision: float = 1.0
) -> Path:
    """Write a PNG of observation ``uuid``: dry CO2 against elapsed time, the fit window,
    the linear and exponential fits, the reported flux and flags."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = store.query("SELECT * FROM observations WHERE uuid = ?", (uuid,))
    if not rows:
        raise ConfigError(f"no observation {uuid!r} in {store.path}")
    obs = rows[0]
    samples = store.query(
        "SELECT elapsed_s, co2_umol_mol, h2o_mmol_mol, cell_pressure_kpa FROM samples "
        "WHERE observation_uuid = ? ORDER BY seq",
        (uuid,),
    )
    if len(samples) < 4:
        raise StorageError(f"observation {uuid} has {len(samples)} samples: nothing to plot")
    t = np.array([s["elapsed_s"] for s in samples], dtype=float)
    co2 = np.array([s["co2_umol_mol"] for s in samples], dtype=float)
    h2o_values = [s["h2o_mmol_mol"] for s in samples]
    h2o = np.array([0.0 if v is None else v for v in h2o_values])
    dry = co2 / (1 - h2o / 1000)
    fluxes = {
        f["model"]: f
        for f in store.query("SELECT * FROM fluxes WHERE observation_uuid = ?", (uuid,))
    }
    dead_band = obs["dead_band_s"] or 0.0
    end = obs["observation_s"] or float(np.nanmax(t))
    fit: Any = None
    pressure = samples[0]["cell_pressure_kpa"]
    temperature = obs["air_temperature_degc"] or obs["soil_temperature_degc"]
    if pressure is not None and temperature is not None and obs["volume_cm3"]:
        fit = fit_closure(
            t,
            co2,
            h2o_mmol_mol=h2o,
            pressure_kpa=np.array([s["cell_pressure_kpa"] for s in samples], dtype=float),
            temperature_degc=temperature,
            volume_cm3=obs["volume_cm3"],
            area_cm2=obs["area_cm2"],
            dead_band_s=dead_band,
            end_s=end,
            precision_mf=precision,
            settings=FitSettings(),
        )
    figure, axis = plt.subplots(figsize=(8, 4.5), dpi=110)
    inside = (t >= dead_band) & (t <= end)
    axis.axvspan(dead_band, end, color="0.93", label="fit window")
    axis.plot(t[~inside], dry[~inside], ".", color="0.6", ms=4, label="outside the window")
    axis.plot(t[inside], dry[inside], ".", color="k", ms=4, label="dry CO2")
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
    selected = next((f for f in fluxes.values() if f["selected"]), None)
    title = f"{obs['chamber']}  {obs['started_at']}  {obs['status']}"
    if selected is not None and selected["flux"] is not None:
        title += f"\nflux {selected['flux']:.3f} umol m-2 s-1 ({selected['model']})"
        if selected["flags"]:
            title += f"  flags: {selected['flags']}"
    if obs["reason"]:
        title += f"\n{obs['reason']}"
    axis.set_title(title, fontsize=9)
    axis.set_xlabel("elapsed time since closure [s]")
    axis.set_ylabel("dry CO2 [umol mol-1]")
    axis.legend(fontsize=8, loc="best")
    figure.tight_layout()
    path = Path(output)
    figure.savefig(path)
    plt.close(figure)
    return path
