"""The calibration procedures, as data: why, what you need, steps, pass criterion, source.

Each :class:`Procedure` is a list of :class:`Step` (what the trainee is told, what is read,
the stability rule, how a step that commands hardware is undone) and named
:class:`Limit` values, each with the place it comes from. The runner
(:mod:`chamberd.calibration.runner`) executes them; ``chamberd calibrate procedures`` and
``docs/trainee.md`` list them without hardware. A site may override any limit in
``[calibration] limits`` (by its name); the record stores the limits that were used.

Where a limit is chamberd's own choice rather than a manufacturer's figure, its source
says so and why it was chosen.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field

from chamberd.controller.errors import ConfigError

__all__ = [
    "PROCEDURES",
    "Limit",
    "Procedure",
    "Step",
    "get_procedure",
    "limit_names",
    "limits_for",
    "unknown_limit",
]


@dataclass(frozen=True)
class Limit:
    value: float
    unit: str
    source: str


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    instruction: str
    reads: str = ""  # what the runner watches or asks
    rule: str = ""  # how it decides (stability, a limit)
    undo: str = ""  # what is undone on every exit path


@dataclass(frozen=True)
class Procedure:
    id: str
    number: int
    title: str
    scope: str  # "analyser" | "chamber" | "chambers" (all, or one with --chamber)
    why: str
    needs: tuple[str, ...]
    steps: tuple[Step, ...]
    criterion: str
    on_fail: str
    limits: Mapping[str, Limit] = field(default_factory=dict)
    models: tuple[str, ...] = ()  # analyser protocols it applies to (empty: any)
    uses_hardware: bool = True  # False: only the trainee's entries (no safe state needed)

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


_STABLE = (
    "stable: drift <= stability_max_drift_per_min and SD <= stability_max_sd over the last "
    "stability_window_s, held for stability_hold_s (calibration/stability.py)"
)
_STABILITY_LIMITS = {
    "stability_window_s": Limit(
        30.0, "s", "chamberd: long enough for a mean of 30 readings at 1 s output"
    ),
    "stability_max_drift_per_min": Limit(
        0.5,
        "umol/mol per min",
        "chamberd: a 5 s instrument average then moves < 0.05 umol/mol, far inside the 1 % "
        "criterion; a purge still in progress drifts by several umol/mol per minute",
    ),
    "stability_max_sd": Limit(
        1.0,
        "umol/mol",
        "about twice the LI-850/LI-840A stated RMS noise at 400 umol/mol with 1 s signal "
        "averaging (< 1 umol/mol, LI-COR specifications)",
    ),
    "stability_hold_s": Limit(20.0, "s", "chamberd: the rule must hold for 20 s without a break"),
    "stability_timeout_s": Limit(
        900.0,
        "s",
        "chamberd: a gas not stable after 15 min points at a leak, an empty cylinder or a "
        "wrong flow, not at a slow purge (the LI-850 cell purges in well under a minute at "
        "0.5-1 L/min)",
    ),
}
_SECOND_GAS = Limit(
    1.0,
    "% of the cylinder value",
    "LI-COR LI-830/LI-850 and LI-820/LI-840A manuals: after a span, a second span gas "
    "should read within 1 % of its value",
)
_ZERO = Limit(
    2.0,
    "umol/mol",
    "chamberd: 2 umol/mol (0.5 % of ambient, about twice the analyser noise) as found is "
    "where a zero adjustment becomes worth it; an offset largely cancels in a flux",
)

PROCEDURES: dict[str, Procedure] = {}


def _add(procedure: Procedure) -> None:
    PROCEDURES[procedure.id] = procedure


_add(
    Procedure(
        id="warmup",
        number=1,
        title="Warm-up and health",
        scope="analyser",
        why=(
            "An analyser measures correctly only once its cell is at its working temperature "
            "and pressure; a cell pressure far from the site barometer means a blocked "
            "filter or a pump problem, a low flow a leak or a clogged line, and the "
            "analyser's own diagnostics report faults the readings hide."
        ),
        needs=("the analyser powered for at least 30 minutes", "the site barometer working"),
        steps=(
            Step(
                "power",
                "Analyser on",
                "Check that the analyser has been powered for at least 30 minutes (the "
                "LI-850's cell is heated to 50 degC; the GMP343 needs 10 min).",
            ),
            Step(
                "watch",
                "Cell temperature and pressure",
                "Leave the analyser sampling ambient air. The runner watches the cell "
                "temperature and pressure until they are stable.",
                reads="cell temperature [degC], cell pressure [kPa], flow [L/min] if reported",
                rule="cell temperature SD <= max_temperature_sd_degc over watch_s; pressure "
                "and flow against their limits",
            ),
            Step(
                "diagnostics",
                "Self-diagnostics",
                "The runner asks the analyser for its diagnostics (LI-8x0 data fields, "
                "GMP343 ERRS).",
                reads="diagnostic fields",
                rule="no error reported",
            ),
        ),
        criterion=(
            "cell temperature stable; |cell pressure - site barometer| <= "
            "max_pressure_difference_kpa; flow (if reported) within flow range; no "
            "diagnostic error"
        ),
        on_fail=(
            "Cell temperature not stable: wait longer and repeat. Pressure difference: check "
            "the inlet filter and the tubing for a blockage, then the pump. Low flow: look "
            "for a kink or a leak in the sample line. A diagnostic error: note its text, see "
            "the analyser's manual, call your supervisor."
        ),
        limits={
            "watch_s": Limit(120.0, "s", "chamberd: two minutes of readings"),
            "max_temperature_sd_degc": Limit(
                0.2, "degC", "chamberd: a regulated cell varies by a few hundredths of a degree"
            ),
            "max_pressure_difference_kpa": Limit(
                3.0,
                "kPa",
                "chamberd: the pump lowers the cell pressure by about 1 kPa below ambient; "
                "more than 3 kPa is a restriction",
            ),
            "min_flow_l_min": Limit(
                0.5, "L/min", "LI-COR LI-850 manual: sample flow 0.5 to 1.0 L/min"
            ),
            "max_flow_l_min": Limit(
                1.0, "L/min", "LI-COR LI-850 manual: sample flow 0.5 to 1.0 L/min"
            ),
        },
    )
)

_add(
    Procedure(
        id="zero-span-check",
        number=2,
        title="Zero/span check (no adjustment)",
        scope="analyser",
        why=(
            "Every analyser drifts. A check against certified gases, without touching the "
            "analyser, measures how far it has drifted; the record becomes a correction "
            "applied to the data (a span error scales every flux one to one)."
        ),
        needs=(
            "a zero gas cylinder (CO2-free air or N2) registered in `chamberd calibrate cylinders`",
            "one or two span cylinders near and above the working range (e.g. 400 and "
            "1000 umol/mol)",
            "the calibration manifold, or a regulator and tubing to the analyser inlet",
        ),
        steps=(
            Step(
                "zero",
                "Zero gas",
                "Connect the zero gas cylinder to the analyser inlet (or the runner opens "
                "its manifold valve); open the regulator to a flow slightly above the "
                "analyser's, with an open vent so the cell stays at ambient pressure.",
                reads="CO2 [umol/mol]",
                rule=_STABLE,
                undo="manifold valve closed",
            ),
            Step(
                "span",
                "Span gas(es)",
                "Connect the span cylinder(s) in turn, as for the zero gas.",
                reads="CO2 [umol/mol]",
                rule=_STABLE,
                undo="manifold valve closed",
            ),
        ),
        criterion=(
            "zero reads within max_zero_umol_mol of 0; each span gas within "
            "max_span_error_pct of its certified value"
        ),
        on_fail=(
            "Not stable: look for a leak at the regulator and the inlet, and that the "
            "cylinder is not empty. Out of limits: run the zero/span adjustment "
            "(zero-span-adjust) for an LI-8x0, or let the correction apply (GMP343); the "
            "check is recorded either way."
        ),
        limits={
            **_STABILITY_LIMITS,
            "max_zero_umol_mol": _ZERO,
            "max_span_error_pct": _SECOND_GAS,
        },
    )
)

_add(
    Procedure(
        id="zero-span-adjust",
        number=3,
        title="Zero/span adjustment (LI-820/830/840A/850)",
        scope="analyser",
        why=(
            "When a check is out of limits the analyser itself can be set right: the "
            "LI-8x0 takes a zero and a span command and re-computes its calibration. The "
            "state before and after is kept, and a second gas proves the result."
        ),
        needs=(
            "a zero gas cylinder",
            "a span cylinder (near the top of the working range)",
            "a second span cylinder of a different value, for the re-check",
        ),
        steps=(
            Step(
                "as-found",
                "As found",
                "The runner reads the analyser's calibration state (<CAL>? and <POLY>?) and "
                "checks the zero and span gases as found, without adjusting.",
                reads="calibration state; CO2 on zero and span gas",
                rule=_STABLE,
            ),
            Step(
                "zero",
                "Zero",
                "Zero gas on. Once the reading is stable the runner sends <CO2ZERO> (and "
                "<H2OZERO> for an analyser measuring H2O) with today's date and waits for "
                "the ACK; the analyser averages the next 5 s.",
                reads="CO2 [umol/mol]",
                rule=_STABLE + "; then the command, ACK TRUE required",
                undo="manifold valve closed",
            ),
            Step(
                "span",
                "Span",
                "Span gas on. Once stable the runner sends <CO2SPAN> with the cylinder's "
                "certified value and the date (and <CO2SPAN2> for a second span point when "
                "asked) and waits for the ACK.",
                reads="CO2 [umol/mol]",
                rule=_STABLE + "; then the command, ACK TRUE required",
                undo="manifold valve closed",
            ),
            Step(
                "as-left",
                "As left and re-check",
                "The runner reads the calibration state again and re-checks with the second "
                "gas (and the zero).",
                reads="calibration state; CO2 on the second gas",
                rule=_STABLE,
            ),
        ),
        criterion="the second gas reads within max_span_error_pct of its value after spanning",
        on_fail=(
            "An ACK FALSE or no ACK: the analyser refused; check the gas is flowing, repeat. "
            "Second gas out of limits: check the cylinder values you entered and the "
            "regulator for leaks, repeat the adjustment; if it fails again call your "
            "supervisor (the analyser may need service). An interrupted adjustment is "
            "recorded incomplete with the commands already sent: repeat it from the start."
        ),
        limits={
            **_STABILITY_LIMITS,
            "max_zero_umol_mol": _ZERO,
            "max_span_error_pct": _SECOND_GAS,
        },
        models=("li820", "li830", "li840a", "li850"),
    )
)

_add(
    Procedure(
        id="gmp343-check",
        number=4,
        title="GMP343 multi-cylinder check",
        scope="analyser",
        why=(
            "The GMP343 is not adjusted in the field here: two or more cylinders, in "
            "alternating order, give its gain and offset, applied to the data afterwards. "
            "Its compensations matter as much: a probe left uncompensated for pressure "
            "reads several percent off at altitude."
        ),
        needs=("two or more cylinders spanning the working range", "the site barometer"),
        steps=(
            Step(
                "compensation",
                "Compensation settings",
                "The runner reads the probe's pressure, temperature, humidity and oxygen "
                "compensation settings and its error list (ERRS).",
                reads="compensation settings, errors",
                rule="pressure compensation on, set within max_pressure_setting_difference_hpa "
                "of the site barometer; no error",
            ),
            Step(
                "cylinders",
                "Cylinders in alternating order",
                "Connect the cylinders in the order the runner gives (low, high, low, high, "
                "...); each is read once stable.",
                reads="CO2 [umol/mol]",
                rule=_STABLE,
                undo="manifold valve closed",
            ),
        ),
        criterion=(
            "each cylinder within max_error_umol_mol + max_error_pct of its value (the "
            "probe's stated accuracy), and the compensation settings right"
        ),
        on_fail=(
            "Compensation off or wrong: set the probe's pressure to the site's (the runner "
            "offers it) and repeat. Out of accuracy: the gain and offset are recorded and "
            "corrected for in the data; a probe far out (> 5 %) needs the manufacturer."
        ),
        limits={
            **_STABILITY_LIMITS,
            "stability_max_sd": Limit(
                3.0,
                "umol/mol",
                "Vaisala GMP343 user guide: noise about 3 umol/mol at 2 s output without smoothing",
            ),
            "max_error_umol_mol": Limit(
                3.0, "umol/mol", "Vaisala GMP343 accuracy: +-(3 umol/mol + 1 % of reading)"
            ),
            "max_error_pct": Limit(
                1.0, "% of reading", "Vaisala GMP343 accuracy: +-(3 umol/mol + 1 % of reading)"
            ),
            "max_pressure_setting_difference_hpa": Limit(
                10.0,
                "hPa",
                "chamberd: the GMP343's pressure dependence is about 0.15 %/hPa "
                "uncompensated; 10 hPa of a wrong setting is 1.5 %",
            ),
            "min_cylinders": Limit(2.0, "cylinders", "issue 11: two or more cylinders"),
        },
        models=("gmp343",),
    )
)

_add(
    Procedure(
        id="linearity",
        number=5,
        title="Linearity",
        scope="analyser",
        why=(
            "A zero and one span fix two points; chamber concentrations climb well above "
            "ambient. Three or four cylinders across the working range show whether the "
            "response is straight between them."
        ),
        needs=("three or four cylinders from zero to the top of the working range",),
        steps=(
            Step(
                "cylinders",
                "Cylinders across the range",
                "Connect the cylinders from the lowest to the highest; each is read once stable.",
                reads="CO2 [umol/mol]",
                rule=_STABLE,
                undo="manifold valve closed",
            ),
            Step(
                "fit",
                "Straight line",
                "The runner fits measured against certified values and reports the "
                "residual of each cylinder.",
                reads="",
                rule="least squares",
            ),
        ),
        criterion=(
            "every residual within max_residual_pct of its value (or max_residual_umol_mol "
            "near zero)"
        ),
        on_fail=(
            "One cylinder far off while the others line up: suspect that cylinder (its "
            "value, its regulator). A curved response: the analyser needs the "
            "manufacturer's multi-point calibration; record it and call your supervisor."
        ),
        limits={
            **_STABILITY_LIMITS,
            "max_residual_pct": _SECOND_GAS,
            "max_residual_umol_mol": Limit(
                2.0, "umol/mol", "chamberd: near zero, 1 % is below the analyser's noise"
            ),
            "min_cylinders": Limit(3.0, "cylinders", "issue 11: three or four cylinders"),
        },
    )
)

_add(
    Procedure(
        id="blank",
        number=6,
        title="Chamber blank and leak test",
        scope="chamber",
        why=(
            "With an impermeable plate under the chamber there is no flux: whatever the "
            "fit reports is the system's own artefact (a leak, an adsorbing surface, a "
            "pressure pulse). It must be below the minimal detectable flux."
        ),
        needs=(
            "an impermeable plate (metal or acrylic sheet) on the collar, sealed",
            "optionally, a helper to breathe around the closed chamber",
        ),
        steps=(
            Step(
                "plate",
                "Plate on the collar",
                "Put the impermeable plate on the collar of the chamber and seal its edge.",
            ),
            Step(
                "closure",
                "Blank closure",
                "The runner closes the lid, records a full closure and opens the lid.",
                reads="CO2 [umol/mol] during the closure",
                rule=(
                    "linear flux over the observation's fit window (fitting.fit_closure): "
                    "the detection limit is a linear one, and an exponential fitted to a "
                    "flat, noisy trace has no stable initial slope"
                ),
                undo="lid opened",
            ),
            Step(
                "breath",
                "Breath test (optional)",
                "The lid closes again; breathe slowly around the lid seal and the collar for "
                "a minute.",
                reads="CO2 rise [umol/mol]",
                rule="rise above the trend < max_breath_rise_umol_mol",
                undo="lid opened",
            ),
        ),
        criterion="|linear blank flux| < the minimal detectable flux of the closure",
        on_fail=(
            "Check the lid gasket and the plate's seal, the tubing connections at the "
            "chamber, then repeat. A breath test that fails points at the spot you "
            "breathed on last."
        ),
        limits={
            "mdf_factor": Limit(
                1.0,
                "x MDF",
                "Nickerson (2016), Evaluating gas emission measurements using Minimum "
                "Detectable Flux (MDF), Eosense; MDF as in fitting.quality",
            ),
            "max_breath_rise_umol_mol": Limit(
                10.0,
                "umol/mol",
                "chamberd: breath is ~40 000 umol/mol CO2; a leak lets in hundreds; 10 is "
                "ten times the analyser noise",
            ),
            "breath_s": Limit(60.0, "s", "chamberd: one minute of breathing"),
        },
    )
)

_add(
    Procedure(
        id="lid-check",
        number=7,
        title="Lid and end-switch check",
        scope="chambers",
        why=(
            "A lid that closes slowly shortens the observation and one whose switch does "
            "not make is aborted by the daemon; found early, it is a loose cable or a "
            "sticky hinge, not a lost week of data."
        ),
        needs=("nobody's hands near the lids",),
        steps=(
            Step(
                "close",
                "Close",
                "The runner closes the lid through Modbus and times the closed end-switch.",
                reads="switch states",
                rule="closed within max_move_s; the switch makes",
                undo="lid opened",
            ),
            Step(
                "open",
                "Open",
                "The runner opens the lid and times the open end-switch.",
                reads="switch states",
                rule="open within max_move_s; the switch makes",
                undo="lid opened",
            ),
        ),
        criterion="each lid closes and opens within max_move_s with its switch making",
        on_fail=(
            "Slow: check the hinge, the air pressure or the motor supply. Switch missing: "
            "check the switch's position and its cable to the input module."
        ),
        limits={
            "max_move_s": Limit(
                10.0,
                "s",
                "chamberd: half the default closing timeout (20 s), so a slow lid is found "
                "before the daemon aborts on it",
            ),
        },
    )
)

_add(
    Procedure(
        id="flow",
        number=8,
        title="Flow check",
        scope="analyser",
        why=(
            "The analyser's flow sets its response time and, through the pressure drop, "
            "its cell pressure; a flow sensor drifts like any other."
        ),
        needs=("an external flowmeter on the analyser's outlet",),
        steps=(
            Step(
                "meter",
                "External flowmeter",
                "Put the flowmeter on the analyser's outlet (or inlet) and read it once the "
                "number settles.",
                reads="your flowmeter reading [L/min]; the analyser's flow if it reports one",
            ),
        ),
        criterion=(
            "the flowmeter within the analyser's flow range; the analyser's own flow within "
            "max_flow_difference_pct of the flowmeter"
        ),
        on_fail="Check the pump, the filters and the tubing for leaks or kinks, then repeat.",
        limits={
            "min_flow_l_min": Limit(
                0.5, "L/min", "LI-COR LI-850 manual: sample flow 0.5 to 1.0 L/min"
            ),
            "max_flow_l_min": Limit(
                1.0, "L/min", "LI-COR LI-850 manual: sample flow 0.5 to 1.0 L/min"
            ),
            "max_flow_difference_pct": Limit(
                10.0,
                "%",
                "chamberd: thermal flow sensors and rotameters agree to a few percent",
            ),
        },
    )
)

_add(
    Procedure(
        id="sensors",
        number=9,
        title="Pressure and temperature sensors",
        scope="analyser",
        why=(
            "The flux is proportional to pressure over temperature: 1 kPa or 3 degC wrong is "
            "1 % on every flux."
        ),
        needs=("a reference barometer", "a reference thermometer in the chamber air"),
        steps=(
            Step(
                "reference",
                "Reference readings",
                "Read the reference barometer and thermometer next to the site's sensors.",
                reads="reference pressure [kPa], reference temperature [degC]",
            ),
            Step(
                "compare",
                "Site sensors",
                "The runner reads the site's pressure and air temperature sensors (and the "
                "analyser's cell pressure) and compares.",
                reads="aux sensors, cell pressure",
            ),
        ),
        criterion=(
            "|site pressure - reference| <= max_pressure_difference_kpa; |air temperature - "
            "reference| <= max_temperature_difference_degc"
        ),
        on_fail=(
            "Check the reference is next to the sensor and in the shade; a sensor out of "
            "limits needs re-calibration or an offset in the site configuration "
            "(aux.offset)."
        ),
        limits={
            "max_pressure_difference_kpa": Limit(
                0.3, "kPa", "chamberd: twice a typical barometer's accuracy (+-0.15 kPa)"
            ),
            "max_temperature_difference_degc": Limit(
                0.5, "degC", "chamberd: twice a typical thermistor's accuracy (+-0.25 degC)"
            ),
        },
    )
)

_add(
    Procedure(
        id="geometry",
        number=10,
        title="Collar geometry",
        scope="chamber",
        why=(
            "The flux is proportional to the system volume over the area: a collar that "
            "sank 1 cm changes the volume of a 20 cm chamber by 5 %. The result becomes a "
            "new dated geometry version of the chamber, used from then on."
        ),
        needs=("a ruler (mm)", "the chamber's, tubing's and analyser's volumes"),
        steps=(
            Step(
                "offsets",
                "Collar offset",
                "Measure the height of the collar above the soil surface, inside, at four or "
                "more points evenly around it.",
                reads="offsets [cm]",
                rule="at least min_points points; SD <= max_offset_sd_cm",
            ),
            Step(
                "volumes",
                "Area and volumes",
                "Enter the collar's inside area and the volumes of the chamber, the tubing "
                "and the analyser.",
                reads="area [cm2], volumes [cm3]",
            ),
        ),
        criterion="at least min_points offsets with SD <= max_offset_sd_cm",
        uses_hardware=False,
        on_fail=(
            "An uneven collar: level the soil surface inside or re-seat the collar, and "
            "measure again."
        ),
        limits={
            "min_points": Limit(4.0, "points", "issue 11: four or more points"),
            "max_offset_sd_cm": Limit(
                1.0,
                "cm",
                "chamberd: 1 cm of unevenness is ~5 % of a 20 cm chamber's volume",
            ),
        },
    )
)

_add(
    Procedure(
        id="dead-band",
        number=11,
        title="Dead band and closure length",
        scope="chamber",
        why=(
            "After the lid closes the gas mixes and the pressure settles; the fit must start "
            "after that (the dead band) and the closure must be long enough to see the "
            "rise, short enough not to suppress it. The scan shows how the flux depends on "
            "the dead band, so you choose with evidence."
        ),
        needs=("the chamber on its collar, measuring normally",),
        steps=(
            Step(
                "closures",
                "Closures",
                "The runner runs closures of the chamber and records them.",
                reads="CO2 [umol/mol]",
                undo="lid opened",
            ),
            Step(
                "scan",
                "Flux against dead band",
                "For each closure the runner fits the flux at each dead band and shows the "
                "table, with the dead band the fitting engine would choose.",
                rule="fitting.window.choose_dead_band",
            ),
        ),
        criterion=(
            "informative: passes when the fitting engine finds a dead band where the flux "
            "changes by less than max_sensitivity_pct_per_10s"
        ),
        on_fail=(
            "No stable region: the closure is too short or the chamber leaks; run the blank "
            "test, or lengthen observation_s."
        ),
        limits={
            "closures": Limit(2.0, "closures", "chamberd: two closures to see repeatability"),
            "max_sensitivity_pct_per_10s": Limit(
                2.0, "% per 10 s", "chamberd: within the flux's own uncertainty"
            ),
        },
    )
)


def get_procedure(name: str) -> Procedure:
    """By id or number; ConfigError listing the procedures otherwise."""
    if name in PROCEDURES:
        return PROCEDURES[name]
    for procedure in PROCEDURES.values():
        if name == str(procedure.number):
            return procedure
    known = ", ".join(f"{p.number} {p.id}" for p in PROCEDURES.values())
    raise ConfigError(f"unknown calibration procedure {name!r} (one of: {known})")


def limit_names() -> dict[str, tuple[str, ...]]:
    """Every limit a site may override, with the procedures that use it."""
    out: dict[str, tuple[str, ...]] = {}
    for procedure in PROCEDURES.values():
        for name in procedure.limits:
            out[name] = (*out.get(name, ()), procedure.id)
    return dict(sorted(out.items()))


def unknown_limit(name: str) -> str | None:
    """Why ``name`` is not a limit of any procedure (None when it is one).

    The one rule for ``[calibration] limits``: the config schema refuses such a name, and
    :func:`limits_for` does too, so a misspelt limit is never silently ignored.
    """
    names = limit_names()
    if name in names:
        return None
    near = difflib.get_close_matches(name, list(names), n=3, cutoff=0.6)
    if near:
        return f"unknown limit (did you mean {' or '.join(near)}?)"
    return "unknown limit (one of: " + ", ".join(names) + ")"


def limits_for(procedure: Procedure, overrides: Mapping[str, float]) -> dict[str, float]:
    """The procedure's limits with the site's overrides (``[calibration] limits``).

    An override of another procedure's limit does not apply here; a name no procedure has
    is a :class:`ConfigError` (see :func:`unknown_limit`).
    """
    problems = [
        f"calibration.limits.{name}: {why}"
        for name in overrides
        if (why := unknown_limit(name)) is not None
    ]
    if problems:
        raise ConfigError("; ".join(problems))
    out = {name: limit.value for name, limit in procedure.limits.items()}
    for name, value in overrides.items():
        if name in out:
            out[name] = float(value)
    return out
