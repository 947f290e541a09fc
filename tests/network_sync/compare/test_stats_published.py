"""Every agreement estimator against a published worked example and its printed numbers.

Sources (each test names its own, with the table or page):

- Bland JM, Altman DG (1986) Lancet 1:307-310, doi:10.1016/S0140-6736(86)90837-8: the peak
  expiratory flow data (Table 1, first reading of each meter, 17 subjects, l/min) and the
  numbers printed in the text.
- mcr (R package, Roche Diagnostics), inst/unitTests/TestCaseCollection/
  MC_TestCase_AnaIT_TD15.xml and ..._TD41.xml (author E. Manuilova): 50-pair data sets with
  reference results computed by Analyse-it (OLS, Deming with jackknife intervals, error
  ratios 1 and 1.21) and by Calanas, the Passing-Bablok reference program (also checked in
  mcr's runit.mcPaBa.R "values are copied and pasted from calanas"). Read for the numbers
  only.
- Sen PK (1968) J Am Stat Assoc 63:1379-1389, doi:10.1080/01621459.1968.10480934: the
  7-point example (Theil-Sen = Passing-Bablok for monotone data), slope 4, 93 % interval
  26/7 to 35/8, intercept 6, as checked in the R package deming's tests/pbtest.R.
- Warton DI (2022) Eco-Stats: Data Analysis in Ecology, Springer, Code Boxes 13.1 and 13.2
  (ecostats vignette Chapter13Solutions): the brain and body weights of 28 species (MASS
  Animals; Rousseeuw & Leroy 1987, Robust Regression and Outlier Detection, p. 57) with the
  printed OLS intervals and the smatr SMA slope and elevation on log10 scales.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from chamberd.network_sync.compare import stats

# Bland & Altman (1986), Table 1: first reading with each meter [l/min]
WRIGHT = [494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427]
MINI = [512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451]

# Rousseeuw & Leroy (1987) p. 57 / MASS::Animals: body [kg], brain [g] of 28 species
BODY = [
    1.35,
    465,
    36.33,
    27.66,
    1.04,
    11700,
    2547,
    187.1,
    521,
    10,
    3.3,
    529,
    207,
    62,
    6654,
    9400,
    6.8,
    35,
    0.12,
    0.023,
    2.5,
    55.5,
    100,
    52.16,
    0.28,
    87000,
    0.122,
    192,
]
BRAIN = [
    8.1,
    423,
    119.5,
    115,
    5.5,
    50,
    4603,
    419,
    655,
    115,
    25.6,
    680,
    406,
    1320,
    5712,
    70,
    179,
    56,
    1,
    0.4,
    12.1,
    175,
    157,
    440,
    1.9,
    154.5,
    3,
    180,
]

# mcr TestCaseCollection (Analyse-it / Calanas references)
TD15_X = [
    18.654599109456,
    17.0610823229594,
    37.8076135618173,
    51.1413961380522,
    103.985667589592,
    34.8605133072495,
    35.1146708951621,
    16.005996343635,
    68.5890100912778,
    62.1699013684068,
    18.1641040703209,
    94.2563842860796,
    31.67278631354,
    18.8059773112482,
    67.9347403613216,
    18.260239156489,
    87.1550332248675,
    98.5843421029197,
    20.3747255514258,
    4.20199417418543,
    27.7662087802102,
    16.6797331091928,
    52.3335230459024,
    1.25970439645986,
    2.55285163008995,
    71.1422300479687,
    99.342890258164,
    40.6747911609727,
    82.5924169862313,
    64.7062991090824,
    1.46968233573658,
    83.5389530283147,
    19.8368624090347,
    44.339918470983,
    19.2879672940529,
    86.5484515948081,
    79.8461255550168,
    66.1164680506251,
    32.8785828616434,
    85.634465208222,
    15.772867025856,
    102.866851788539,
    16.4442973704484,
    23.0916021823352,
    83.3011761592876,
    9.47357732139885,
    15.4574423263928,
    67.0394769874472,
    32.7239965276836,
    71.7361088013058,
]
TD15_Y = [
    15.9116325401596,
    17.9423397346645,
    58.1755698848695,
    49.0779434653576,
    113.758268975683,
    35.5525894416901,
    39.4088027819502,
    15.0167183931276,
    65.8450151148211,
    62.6667874119841,
    15.8020862675435,
    83.9418317622942,
    33.5524291118479,
    18.5775089262923,
    73.872592767028,
    21.600509295785,
    93.4269960011703,
    89.8278248717022,
    20.130360709819,
    4.94910345310486,
    23.1566064984898,
    17.336339530418,
    56.2280624424048,
    1.70969794990576,
    3.40128933880261,
    87.5197563754811,
    67.3466761237754,
    35.6882873995953,
    90.4041198524321,
    62.2603160684644,
    1.52718831259026,
    84.5412183739216,
    19.0003036715583,
    51.0624306952549,
    12.0291575952956,
    55.3970074896586,
    96.7628055558332,
    69.6940969840453,
    29.1380990869214,
    85.4597993067675,
    18.1508502210932,
    92.1385811560549,
    17.012175857013,
    23.0242126162252,
    95.7510267835212,
    8.70125548126123,
    13.4955271740672,
    45.8284262464427,
    31.1175741976669,
    69.5490311988868,
]
TD41_X = [
    51.2645749891018,
    25.057888623163,
    87.7627598051843,
    62.7082431751683,
    80.1505333459012,
    4.62656604009068,
    33.8310555651344,
    32.0639233133885,
    55.2077551040875,
    88.035676807363,
    26.4910934056359,
    46.2676105006161,
    67.5309426729014,
    69.4845641448515,
    99.6168230345125,
    29.8740565635394,
    76.4074905899151,
    40.4037427291051,
    102.582022432525,
    77.2420615775276,
    54.4091160177792,
    31.6670196474807,
    35.3688444029188,
    48.4596331809692,
    27.2766177138551,
    16.8936814075242,
    21.978946351695,
    31.8737570958866,
    65.2811331882764,
    11.4235216747994,
    26.5759954950747,
    89.7483619905396,
    70.8540190812346,
    81.722195686426,
    88.8717635815042,
    69.8842397333777,
    41.3339139273995,
    46.7715712147959,
    7.2758706475883,
    107.885815963472,
    72.476537675172,
    5.47829692782881,
    54.7122861461908,
    100.774725860614,
    58.9921395982599,
    26.0127119387814,
    52.4842022010358,
    20.4930187951634,
    19.2251154457486,
    15.6062233212609,
]
TD41_Y = [
    57.5184652931192,
    20.8590706998877,
    108.803321969406,
    61.9186963049216,
    66.3660888378279,
    4.45211496523264,
    32.5230480583973,
    35.6080901524917,
    53.8918711450082,
    60.4588280634825,
    26.36826855427,
    41.3684710045443,
    64.2210938093771,
    56.4507675239752,
    104.375984642575,
    27.1349756417984,
    94.57022726837,
    29.4173054011996,
    65.8469193441376,
    72.8808353078608,
    52.3451209927057,
    29.9746067384427,
    41.473958110454,
    42.6744860392878,
    36.4560529958421,
    16.3614420035519,
    25.0786009186081,
    23.9554024584609,
    71.1179574648198,
    10.0486986665957,
    19.0607414061787,
    71.7842138052182,
    126.559037624235,
    94.0881361451604,
    87.2145942516959,
    89.5887499202462,
    48.5784251203412,
    35.6846235173564,
    7.12184193955352,
    100.323182519431,
    69.23017359012,
    3.82672858010298,
    49.4382345176691,
    77.5738341281733,
    52.4666442933717,
    14.6409084616032,
    49.8976536701488,
    21.1546025964904,
    12.5229666712546,
    13.2198613541858,
]


DATA = {"TD15": (TD15_X, TD15_Y), "TD41": (TD41_X, TD41_Y)}


def test_bland_altman_1986_peak_flow_mean_sd_and_limits():
    """Bland & Altman (1986) text beside Fig. 2: mean difference (Wright - mini) -2.1 l/min,
    SD 38.8 l/min; limits of agreement (2 SD) -2.1 - 2 x 38.8 = -79.7 and 75.5 l/min.

    The printed limits are made from the rounded mean and SD, so ours (from unrounded ones,
    -79.6 and 75.4) agree within 0.1.
    """
    ba = stats.bland_altman(MINI, WRIGHT, k=2.0, loa_ci="1986")  # b - a = Wright - mini
    assert round(ba.mean_difference.value, 1) == -2.1
    assert round(ba.sd_difference, 1) == 38.8
    assert ba.loa_lower.value == pytest.approx(-79.7, abs=0.1)
    assert ba.loa_upper.value == pytest.approx(75.5, abs=0.1)
    assert ba.n == 17


def test_bland_altman_1986_peak_flow_confidence_intervals():
    """Bland & Altman (1986), "Precision of estimated limits of agreement": se of the mean
    difference sqrt(s^2/n) = 9.4, of a limit sqrt(3 s^2/n) = 16.3 l/min, t(16) = 2.12, so the
    bias lies in -22.0 to 17.8, the lower limit in -114.3 to -45.1 and the upper in 40.9 to
    110.1 l/min. The paper rounds each step (9.4, 16.3, 2.12, -79.7, 75.5): ours come from
    unrounded values and agree within 0.25 l/min.
    """
    ba = stats.bland_altman(MINI, WRIGHT, k=2.0, loa_ci="1986")
    sd, n = ba.sd_difference, ba.n
    assert round(sd / math.sqrt(n), 1) == 9.4
    assert round(math.sqrt(3 * sd * sd / n), 1) == 16.3
    lo, hi = ba.mean_difference.ci
    assert lo == pytest.approx(-22.0, abs=0.1) and hi == pytest.approx(17.8, abs=0.1)
    lo, hi = ba.loa_lower.ci
    assert lo == pytest.approx(-114.3, abs=0.25) and hi == pytest.approx(-45.1, abs=0.25)
    lo, hi = ba.loa_upper.ci
    assert lo == pytest.approx(40.9, abs=0.25) and hi == pytest.approx(110.1, abs=0.25)


def test_bland_altman_peak_flow_1_96_limits_and_agreement_function():
    """With 1.96 SD the same data give -78.1 to 73.9 l/min (Wright - mini); Analyse-it's
    tutorial (Estimating the bias and limits of agreement) prints -73.9 to 78.1 for the
    reverse difference, mini - Wright, mean 2.1."""
    ba = stats.bland_altman(MINI, WRIGHT)
    assert round(ba.loa_lower.value, 1) == -78.1 and round(ba.loa_upper.value, 1) == 73.9
    rev = stats.agreement(WRIGHT, MINI, n_boot=0).as_dict()
    assert round(rev["bias"], 1) == 2.1
    assert round(rev["loa_lower"], 1) == -73.9 and round(rev["loa_upper"], 1) == 78.1


@pytest.mark.parametrize(
    ("name", "lam_mcr", "ref"),
    [
        # TD15, Deming.1: intercept, [L, U], slope, [L, U]
        (
            "TD15",
            1.0,
            (
                -0.505729735057073,
                (-3.06557290114323, 2.05411343102908),
                0.998922574014433,
                (0.904225546852836, 1.09361960117603),
            ),
        ),
        (
            "TD15",
            1.21,
            (
                -0.708594035342613,
                (-3.2419770759952, 1.82478900530997),
                1.00329228321811,
                (0.909809514645456, 1.09677505179076),
            ),
        ),
        (
            "TD41",
            1.0,
            (
                -5.04645256155241,
                (-12.4604580034375, 2.36755288033263),
                1.06738449814271,
                (0.8601602492072, 1.27460874707822),
            ),
        ),
        (
            "TD41",
            1.21,
            (
                -5.62594848494648,
                (-13.3819872218693, 2.13009025197638),
                1.07870976478824,
                (0.86553760575191, 1.29188192382458),
            ),
        ),
    ],
)
def test_deming_jackknife_against_analyse_it(name, lam_mcr, ref):
    """mcr MC_TestCase_AnaIT_TD15.xml / TD41.xml, algorithms Deming.1 and Deming.121
    (Analyse-it, jackknife intervals). mcr's ErrorRatio is var(error x) / var(error y), the
    reciprocal of our error_ratio. The XML asks for agreement within 1e-6 (TD15) and 1e-5
    (TD41); we hold 1e-6 relative on the estimates and 1e-6 absolute on the limits."""
    xs, ys = DATA[name]
    fit = stats.deming(xs, ys, error_ratio=1.0 / lam_mcr)
    intercept, intercept_ci, slope, slope_ci = ref
    assert fit.slope == pytest.approx(slope, rel=1e-9)
    assert fit.intercept == pytest.approx(intercept, rel=1e-9)
    assert fit.slope_ci == pytest.approx(slope_ci, abs=1e-6)
    assert fit.intercept_ci == pytest.approx(intercept_ci, abs=1e-6)
    assert fit.n == 50


@pytest.mark.parametrize(
    ("name", "ref"),
    [
        (
            "TD15",
            (
                1.52907247609414,
                (-3.23879503525852, 6.29693998744679),
                0.955092812261344,
                (0.870115981048239, 1.04006964347445),
            ),
        ),
        (
            "TD41",
            (
                0.789929488909156,
                (-7.0905682492326, 8.67042722705091),
                0.953322292873791,
                (0.818569943653376, 1.08807464209421),
            ),
        ),
    ],
)
def test_ols_against_analyse_it(name, ref):
    """mcr MC_TestCase_AnaIT_TD15.xml / TD41.xml, algorithm LinReg (analytical intervals)."""
    xs, ys = DATA[name]
    fit = stats.ols(xs, ys)
    intercept, intercept_ci, slope, slope_ci = ref
    assert fit.slope == pytest.approx(slope, rel=1e-9)
    assert fit.intercept == pytest.approx(intercept, rel=1e-9)
    assert fit.slope_ci == pytest.approx(slope_ci, abs=1e-6)
    assert fit.intercept_ci == pytest.approx(intercept_ci, abs=1e-6)


@pytest.mark.parametrize(
    ("name", "ref"),
    [
        (
            "TD15",
            (-0.639752985, (-2.333080818, 0.840973103), 1.020588521, (0.958488786, 1.092320098)),
        ),
        (
            "TD41",
            (-1.748618519, (-8.325836202, 0.773029866), 0.996354387, (0.922736244, 1.129791731)),
        ),
    ],
)
def test_passing_bablok_against_calanas(name, ref):
    """mcr MC_TestCase_AnaIT_TD15.xml / TD41.xml, algorithm PaBa (Calanas references, printed
    to 9 decimals), and runit.mcPaBa.R (the same values to 15 digits)."""
    xs, ys = DATA[name]
    fit = stats.passing_bablok(xs, ys)
    intercept, intercept_ci, slope, slope_ci = ref
    assert fit.slope == pytest.approx(slope, abs=1e-9)
    assert fit.intercept == pytest.approx(intercept, abs=1e-9)
    assert fit.slope_ci == pytest.approx(slope_ci, abs=1e-9)
    assert fit.intercept_ci == pytest.approx(intercept_ci, abs=1e-9)


def test_passing_bablok_is_scale_equivariant_like_mcr_td9_td13():
    """mcr's TD9 and TD13 are TD-style data scaled by 1e-12 and 1e6 with the same slope:
    the slope must not depend on the unit of the data."""
    xs, ys = DATA["TD15"]
    base = stats.passing_bablok(xs, ys)
    for scale in (1e-12, 1e6):
        fit = stats.passing_bablok(np.asarray(xs) * scale, np.asarray(ys) * scale)
        assert fit.slope == pytest.approx(base.slope, rel=1e-12)
        assert fit.slope_ci == pytest.approx(base.slope_ci, rel=1e-12)
        assert fit.intercept == pytest.approx(base.intercept * scale, rel=1e-9)


def test_passing_bablok_sen_1968_example():
    """Sen (1968), the 7-point example: slope 4, intercept 6, and at 93 % the interval from
    the 4th to the 18th of the 21 ordered slopes, 26/7 to 35/8."""
    fit = stats.passing_bablok([1, 2, 3, 4, 10, 12, 18], [9, 15, 19, 20, 45, 55, 78], alpha=0.07)
    assert fit.slope == 4.0
    assert fit.intercept == 6.0
    assert fit.slope_ci == pytest.approx((26 / 7, 35 / 8), rel=1e-12)


def test_sma_against_warton_eco_stats_code_box_13_2():
    """Warton (2022) Code Box 13.2: sma(brain ~ body, log = "xy") prints elevation 0.8797718
    and slope 0.6363038 (log10 scales)."""
    fit = stats.sma(np.log10(BODY), np.log10(BRAIN))
    assert fit.slope == pytest.approx(0.6363038, abs=5e-8)
    assert fit.intercept == pytest.approx(0.8797718, abs=5e-8)
    assert fit.n == 28


def test_sma_slope_interval_inverts_pitman_test():
    """Warton et al. (2006) derive the SMA slope interval by inverting the test that the
    residuals y - b x and the fitted axis y + b x are uncorrelated (Pitman 1939): at each
    end of the interval that test's F statistic equals F(0.95; 1, n - 2). Checked here on
    the Animals data independently of the closed form."""
    x, y = np.log10(BODY), np.log10(BRAIN)
    fit = stats.sma(x, y)
    n = x.size
    f_crit = __import__("scipy").stats.f.ppf(0.95, 1, n - 2)
    for bound in fit.slope_ci:
        r = np.corrcoef(y - bound * x, y + bound * x)[0, 1]
        f = r * r / (1 - r * r) * (n - 2)
        assert f == pytest.approx(f_crit, rel=1e-9)


def test_ols_against_warton_eco_stats_code_box_13_1():
    """Warton (2022) Code Box 13.1: confint(lm(log(brain) ~ log(body))) prints intercept
    1.7056829 to 3.4041133 and slope 0.3353152 to 0.6566742 (natural logs)."""
    fit = stats.ols(np.log(BODY), np.log(BRAIN))
    assert fit.intercept_ci == pytest.approx((1.7056829, 3.4041133), abs=5e-8)
    assert fit.slope_ci == pytest.approx((0.3353152, 0.6566742), abs=5e-8)


def test_ccc_decomposition_on_peak_flow():
    """Lin (1989) eq. 2-3: rho_c = r C_b, C_b = 2 / (v + 1/v + u^2), and rho_c = 1 - E(b - a)^2
    / (s_a^2 + s_b^2 + (mean_a - mean_b)^2) with 1/n moments (Lin's estimator), checked on
    the Bland & Altman data. No printed CCC for a data set we could obtain was found (see
    docs/agreement.md); the interval is checked for coverage in test_stats_coverage.py."""
    a, b = np.asarray(MINI, float), np.asarray(WRIGHT, float)
    c = stats.ccc(a, b)
    msd = np.mean((b - a) ** 2)
    denom = a.var() + b.var() + (a.mean() - b.mean()) ** 2
    assert c.ccc.value == pytest.approx(1 - msd / denom, rel=1e-12)
    assert c.ccc.value == pytest.approx(c.precision.value * c.accuracy.value, rel=1e-12)
    v, u = c.scale_shift, c.location_shift
    assert c.accuracy.value == pytest.approx(2 / (v + 1 / v + u * u), rel=1e-12)
    assert c.precision.value == pytest.approx(np.corrcoef(a, b)[0, 1], rel=1e-12)
    lo, hi = c.ccc.ci
    assert lo < c.ccc.value < hi < 1
