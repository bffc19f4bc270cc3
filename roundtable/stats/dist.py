"""Normal and Student t distribution functions without importing ``scipy.stats``.

``scipy.stats`` takes most of a second of CPU to import (it builds every distribution and
parses their docstrings); the analysis commands need four functions of it. These are the
``scipy.special`` functions ``scipy.stats`` itself evaluates for them (``t.ppf(q, df)`` is
``stdtrit(df, q)``, ``t.sf(x, df)`` is ``stdtr(df, -x)``, ``norm.ppf(q)`` is
``ndtri(q)``), so the numbers are bit-identical to scipy's for the arguments the analyses
pass (0 < q < 1, df > 0, finite x). The exception is :func:`norm_cdf`, from the C
library's ``erfc`` (within 1e-13 of scipy's value; see there).

Even ``scipy.special`` costs ~0.3 s of CPU to import (through ``numpy.testing`` and
``numpy.f2py``), more than ``roundtable analyze profiles`` needs for its work. So it is
imported only when a value must be computed: the quantiles of two-sided 95% intervals
(``t_ppf(0.975, df)`` for whole df up to :data:`T975_MAX_DF`, ``norm_ppf(0.975)``), which
nearly every interval uses, are the numbers ``scipy.special`` returns for them, kept in
:data:`T975` and :data:`Z975` (``tests/test_dist.py`` recomputes each with scipy and
requires the same float, bit for bit).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["T975", "T975_MAX_DF", "Z975", "norm_cdf", "norm_ppf", "t_ppf", "t_sf"]

#: ``scipy.special.ndtri(0.975)``
Z975 = 1.959963984540054

#: ``scipy.special.stdtrit(df, 0.975)`` for df = 1, 2, ... :data:`T975_MAX_DF`
T975: tuple[float, ...] = (
    12.706204736174694, 4.302652729749462, 3.1824463052837078, 2.7764451051977934,
    2.5705818356363146, 2.4469118511449786, 2.364624251592784, 2.306004135204166,
    2.262157162798205, 2.228138851986274, 2.200985160091639, 2.1788128296672284,
    2.1603686564627913, 2.144786687917804, 2.131449545559776, 2.1199052992212546,
    2.1098155778333156, 2.1009220402410382, 2.0930240544083087, 2.085963447265864,
    2.0796138447276795, 2.0738730679040254, 2.0686576104190486, 2.0638985616280245,
    2.0595385527532972, 2.0555294386428735, 2.0518305164802846, 2.0484071417952454,
    2.045229642132703, 2.0422724563012378, 2.039513446396408, 2.0369333434601016,
    2.0345152974493383, 2.0322445093177186, 2.030107928250343, 2.0280940009804502,
    2.0261924630291093, 2.0243941639119694, 2.022690920036761, 2.021075390306273,
    2.019540970441376, 2.0180817028184443, 2.016692199227824, 2.0153675744437636,
    2.014103388880846, 2.012895598919429, 2.0117405137297655, 2.010634757624232,
    2.0095752371292392, 2.008559112100761, 2.007583770315836, 2.006646805061688,
    2.0057459953178687, 2.0048792881880564, 2.0040447832891455, 2.003240718847872,
    2.002465459291007, 2.0017174841452356, 2.000995378088267, 2.0002978220142604,
    1.999623584994939, 1.9989715170333788, 1.998340542520741, 1.997729654317693,
    1.9971379083920038, 1.9965644189523117, 1.996008354025296, 1.9954689314298435,
    1.9949454151072374, 1.994437111771186, 1.9939433678456255, 1.9934635666618719,
    1.992997125889855, 1.992543495180932, 1.9921021540022417, 1.9916726096446642,
    1.9912543953883846, 1.9908470688116906, 1.9904502102301285, 1.990063421254446,
    1.9896863234569029, 1.989318557136572, 1.9889597801751624, 1.9886096669757083,
    1.9882679074772216, 1.98793420623902, 1.9876082815890708, 1.9872898648311692,
    1.986978699506281, 1.9866745407037683, 1.9863771544186177, 1.98608631695113,
    1.9858018143458227, 1.985523441866604, 1.9852510035054978, 1.984984311522457,
    1.9847231860139845, 1.9844674545084815, 1.9842169515864174, 1.9839715185235518,
    1.983731002955606, 1.9834952585628793, 1.9832641447734565, 1.9830375264837259,
    1.9828152737950475, 1.9825972617655006, 1.9823833701756908, 1.982173483307727,
    1.9819674897364825, 1.981765282132372, 1.9815667570749007, 1.9813718148763053,
    1.981180359414661, 1.9809922979758567, 1.9808075411039094, 1.9806260024590894,
    1.9804475986834025, 1.980272249272974, 1.9800998764569397, 1.9799304050824402,
)
T975_MAX_DF = len(T975)

_SQRT1_2 = math.sqrt(0.5)


def _special() -> Any:
    from scipy import special

    return special


def norm_ppf(q: float) -> float:
    """Quantile of the standard normal (``scipy.stats.norm.ppf(q)``)."""
    if q == 0.975:
        return Z975
    return float(_special().ndtri(q))


def norm_cdf(x: float) -> float:
    """Distribution function of the standard normal (``scipy.stats.norm.cdf(x)``).

    From the C library's ``erfc`` (``math.erfc``), not ``scipy.special.ndtr``: a
    normal-approximation p-value is often the only value of ``scipy.special`` a command
    needs, and importing it costs more than the command's work. The two agree to within
    1e-13 of the value (``ndtr`` is Cephes's rational approximation, documented to
    5.7e-14; glibc's ``erfc`` to under an ulp), so a p-value may differ from scipy's in
    its 14th significant digit; below about -37.5, where ``ndtr`` returns 0, this returns
    the subnormal value."""
    return 0.5 * math.erfc(-x * _SQRT1_2)


def t_ppf(q: float, df: float) -> float:
    """Quantile of Student's t with ``df`` degrees of freedom (``scipy.stats.t.ppf``)."""
    if q == 0.975 and 1 <= df <= T975_MAX_DF and float(df).is_integer():
        return T975[int(df) - 1]
    return float(_special().stdtrit(df, q))


def t_sf(x: float, df: float) -> float:
    """Upper tail P(T > x) of Student's t with ``df`` degrees of freedom
    (``scipy.stats.t.sf``)."""
    return float(_special().stdtr(df, -x))
