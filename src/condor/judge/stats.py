"""Statistics of judge results: rates with 95% intervals, position consistency, length control.

- Win, tie and loss rates get Wilson score intervals, which stay inside [0, 1] and behave at small n
  and at rates near 0 or 1, where the normal approximation does not.
- Position consistency is the share of pairs whose two orders gave the same verdict.
- The length-controlled win rate follows the idea of length-controlled AlpacaEval: judges prefer longer
  answers, so the chance that ``b`` wins is modelled as ``sigmoid(theta + phi * tanh(d / sd(d)))``
  with ``d`` the length difference (characters of ``b`` minus ``a``), fitted by logistic regression;
  the controlled rate is the prediction at ``d = 0``, ``sigmoid(theta)``: how often ``b`` would win
  were both answers equally long. A tie counts as half a win and half a loss. Its interval is a
  percentile bootstrap over pairs (seeded, so a report is reproducible).
- Grades (1-10) get a mean with a normal-approximation interval; the gain of refinement is the mean of
  the paired differences, final minus original, on records graded on both.

Pure functions over plain values; scikit-learn (the ``judge`` extra) is imported only to fit the
length model. Leaves out significance tests between several systems and any per-category breakdown.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

Z95 = 1.959963984540054
#: Bootstrap resamples for the interval of the length-controlled win rate.
BOOTSTRAP = 200
INSTALL_HINT = "install the judge extra: pip install 'condor-data[judge]'"


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": round(self.value, 6), "low": round(self.low, 6), "high": round(self.high, 6)}

    def percent(self) -> str:
        return f"{100 * self.value:.1f}% [{100 * self.low:.1f}, {100 * self.high:.1f}]"


def wilson(successes: float, n: int, z: float = Z95) -> Interval:
    """The share ``successes / n`` with its Wilson score interval (``n = 0``: the whole of [0, 1])."""
    if n <= 0:
        return Interval(0.0, 0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # Clamped to the estimate as well: at p = 0 or 1 rounding can put an end a hair past it.
    return Interval(p, min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)))


def mean_interval(values: Sequence[float], z: float = Z95) -> Interval | None:
    """Mean with ``z * sd / sqrt(n)`` either side; None without values."""
    n = len(values)
    if n == 0:
        return None
    mean = sum(values) / n
    if n == 1:
        return Interval(mean, mean, mean)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = z * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half)


@dataclass(frozen=True)
class PairOutcome:
    """One judged pair: who won after both orders, whether the orders agreed, and both lengths."""

    winner: str  # "a", "b" or "tie"
    consistent: bool
    length_a: int
    length_b: int


@dataclass(frozen=True)
class PairwiseStats:
    """``b`` against ``a``: counts, rates with intervals, consistency, length difference, LC win rate."""

    pairs: int
    b_wins: int
    ties: int
    a_wins: int
    b_win_rate: Interval
    tie_rate: Interval
    a_win_rate: Interval
    #: Ties counted as half a win: the usual single "win rate" number.
    b_win_rate_with_ties: Interval
    position_consistency: Interval
    mean_length_difference: float
    length_controlled_win_rate: Interval | None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in list(out.items()):
            if isinstance(getattr(self, key), Interval):
                out[key] = getattr(self, key).as_dict()
        out["mean_length_difference"] = round(self.mean_length_difference, 2)
        return out


def pairwise_stats(outcomes: Iterable[PairOutcome], *, length_control: bool = True, seed: int = 0) -> PairwiseStats:
    """Summarise judged pairs; the length model is fitted only when ``length_control`` and there are pairs."""
    items = list(outcomes)
    n = len(items)
    b_wins = sum(1 for o in items if o.winner == "b")
    a_wins = sum(1 for o in items if o.winner == "a")
    ties = n - a_wins - b_wins
    consistent = sum(1 for o in items if o.consistent)
    differences = [o.length_b - o.length_a for o in items]
    lc = length_controlled_win_rate(items, seed=seed) if length_control and n else None
    return PairwiseStats(
        pairs=n, b_wins=b_wins, ties=ties, a_wins=a_wins,
        b_win_rate=wilson(b_wins, n), tie_rate=wilson(ties, n), a_win_rate=wilson(a_wins, n),
        b_win_rate_with_ties=wilson(b_wins + ties / 2, n),
        position_consistency=wilson(consistent, n),
        mean_length_difference=sum(differences) / n if n else 0.0,
        length_controlled_win_rate=lc,
    )


def _design(items: Sequence[PairOutcome]) -> tuple[list[float], list[float], list[float]]:
    """Feature, outcome and weight rows: a tie becomes a half-weight win and a half-weight loss."""
    differences = [o.length_b - o.length_a for o in items]
    mean = sum(differences) / len(differences)
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / len(differences))
    x, y, w = [], [], []
    for outcome, difference in zip(items, differences):
        feature = math.tanh(difference / sd) if sd > 0 else 0.0
        if outcome.winner == "tie":
            x += [feature, feature]
            y += [1.0, 0.0]
            w += [0.5, 0.5]
        else:
            x.append(feature)
            y.append(1.0 if outcome.winner == "b" else 0.0)
            w.append(1.0)
    return x, y, w


def _fit_at_zero(x: Any, y: Any, w: Any) -> float:
    """``sigmoid(theta)`` of a logistic regression of ``y`` on ``x`` (the win rate at equal length)."""
    import numpy as np

    if y.min() == y.max():  # every pair went one way: nothing to adjust, and the fit would not converge
        return float(y[0])
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise RuntimeError(f"scikit-learn is missing for the length-controlled win rate; {INSTALL_HINT}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # A mild L2 penalty on the length slope only (the intercept is not penalised) keeps the fit
        # finite when lengths barely vary, without pulling the adjustment towards zero at usual sizes.
        model = LogisticRegression(C=10.0, solver="newton-cholesky", max_iter=200)
        model.fit(x.reshape(-1, 1), y, sample_weight=w)
    theta = float(model.intercept_[0])
    return float(1.0 / (1.0 + np.exp(-theta)))


def length_controlled_win_rate(items: Sequence[PairOutcome], *, seed: int = 0, resamples: int = BOOTSTRAP) -> Interval:
    """How often ``b`` would win at equal length, with a bootstrap 95% interval."""
    import numpy as np

    x, y, w = (np.asarray(v, dtype=float) for v in _design(items))
    value = _fit_at_zero(x, y, w)
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(resamples):
        sample = [items[i] for i in rng.integers(0, len(items), len(items))]
        bx, by, bw = (np.asarray(v, dtype=float) for v in _design(sample))
        estimates.append(_fit_at_zero(bx, by, bw))
    low, high = np.percentile(estimates, [2.5, 97.5])
    return Interval(value, float(min(low, value)), float(max(high, value)))


@dataclass(frozen=True)
class GradeStats:
    """Grades of a dataset: per answer version, the original against the final answer, and the gain."""

    records: int
    by_round: list[dict[str, Any]]
    original: Interval | None
    final: Interval | None
    gain: Interval | None
    improved: int
    same: int
    worse: int

    def as_dict(self) -> dict[str, Any]:
        def d(value: Interval | None) -> dict[str, float] | None:
            return value.as_dict() if value is not None else None

        return {"records": self.records, "by_round": self.by_round, "original": d(self.original),
                "final": d(self.final), "gain": d(self.gain), "improved": self.improved, "same": self.same,
                "worse": self.worse}


def grade_stats(graded: Iterable[tuple[dict[int, float], int]]) -> GradeStats:
    """``graded``: per record, ``({version index: score}, final version index)``."""
    by_round: dict[int, list[float]] = {}
    originals, finals, gains = [], [], []
    improved = same = worse = records = 0
    for scores, final in graded:
        records += 1
        for version, score in scores.items():
            by_round.setdefault(version, []).append(score)
        if 0 in scores:
            originals.append(scores[0])
        if final in scores:
            finals.append(scores[final])
        if 0 in scores and final in scores:
            gain = scores[final] - scores[0]
            gains.append(gain)
            improved, same, worse = improved + (gain > 0), same + (gain == 0), worse + (gain < 0)
    rounds = []
    for version in sorted(by_round):
        interval = mean_interval(by_round[version])
        assert interval is not None
        rounds.append({"round": version, "n": len(by_round[version]), **interval.as_dict()})
    return GradeStats(records, rounds, mean_interval(originals), mean_interval(finals), mean_interval(gains),
                      improved, same, worse)
