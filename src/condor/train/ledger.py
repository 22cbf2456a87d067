"""The record of a ``condor iterate`` directory: settings, held-out set, one row per finished iteration.

``iterate.json`` is rewritten whole (atomically) after each iteration, so it always describes finished
iterations only; an iteration in progress is found again from its own resumable parts. It binds the
directory to its settings (everything but the number of iterations, which a rerun may raise), so a
rerun with other settings is refused instead of mixing two experiments. ``iterations.md`` is the same
table for people. The gate is here too: whether a new model's win rate earns promotion.
Leaves out: comparing models across different iterate directories.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from condor.run.store import atomic_write_text
from condor.train.settings import IterateSettings

LEDGER_FILE = "iterate.json"
TABLE_FILE = "iterations.md"
LEDGER_FORMAT = "condor-iterate v1"
#: The name of the starting model in tables and ledgers.
BASE = "base"


class IterateError(ValueError):
    """The iteration loop cannot start or go on; the message says why and what to do."""


def settings_key(settings: IterateSettings, run_config: dict[str, Any]) -> str:
    bound = settings.model_dump(mode="json", exclude={"iterations"})
    blob = json.dumps({"iterate": bound, "run": run_config}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


@dataclass
class Ledger:
    """What ``iterate.json`` holds."""

    key: str
    base_model: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    heldout: dict[str, Any] | None = None

    @property
    def best(self) -> str:
        """The name of the best model so far (``base`` or ``iter-K``)."""
        return self.rows[-1]["best_after"] if self.rows else BASE

    def as_dict(self) -> dict[str, Any]:
        return {"format": LEDGER_FORMAT, "key": self.key, "base_model": self.base_model, "best": self.best,
                "heldout": self.heldout, "iterations": self.rows}


def load_ledger(root: Path, key: str, base_model: str | None) -> Ledger:
    """The ledger of ``root``, or a new one; refused when ``root`` was made with other settings."""
    path = root / LEDGER_FILE
    if not path.exists():
        return Ledger(key, base_model)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise IterateError(f"{path} is unreadable; choose another --output") from None
    if not isinstance(data, dict) or data.get("format") != LEDGER_FORMAT:
        raise IterateError(f"{path} is not a condor iterate record ({LEDGER_FORMAT}); choose another --output")
    if data.get("key") != key:
        raise IterateError(f"{root} was made with other settings (method, models, training, gate or run config); "
                           "rerun it with those, or choose another --output")
    return Ledger(key, data.get("base_model"), list(data.get("iterations") or []), data.get("heldout"))


def save_ledger(root: Path, ledger: Ledger) -> None:
    atomic_write_text(root / LEDGER_FILE, json.dumps(ledger.as_dict(), indent=2, ensure_ascii=False))
    atomic_write_text(root / TABLE_FILE, render_table(ledger.rows))


def decide(settings: IterateSettings, win_rate: dict[str, float] | None) -> tuple[bool, str]:
    """Whether the new model is promoted, and why, from its win rate (ties half) with its 95% interval."""
    if win_rate is None:
        return settings.gate == "always", "no judged pairs" + (" (gate: always)" if settings.gate == "always" else "")
    t = settings.threshold
    value, low, high = win_rate["value"], win_rate["low"], win_rate["high"]
    shown = f"{100 * value:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"
    if settings.gate == "always":
        return True, f"gate always (win rate {shown})"
    if settings.gate == "rate":
        return value > t, f"win rate {shown} {'>' if value > t else '<='} {100 * t:.0f}%"
    if low > t:
        return True, f"win rate {shown}: interval entirely above {100 * t:.0f}%"
    return False, f"win rate {shown}: interval not entirely above {100 * t:.0f}%"


def _loss(row: dict[str, Any]) -> str:
    train = row.get("train") or {}
    first, last = train.get("first_loss"), train.get("final_loss")
    if first is None or last is None:
        return "-"
    return f"{first:.3f} -> {last:.3f}"


def _verdicts(row: dict[str, Any]) -> tuple[str, str]:
    judged = row.get("eval") or {}
    if not judged.get("pairs"):
        return "-", "-"
    rate = judged["win_rate"]
    return (f"{judged['wins']} / {judged['ties']} / {judged['losses']}",
            f"{100 * rate['value']:.1f}% [{100 * rate['low']:.1f}, {100 * rate['high']:.1f}]")


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """One row of cells per iteration, in the order of :data:`COLUMNS`."""
    out = []
    for row in rows:
        counts, rate = _verdicts(row)
        data = row.get("data") or {}
        out.append([str(row["iteration"]), row["trained_from"], str(data.get("train_rows", 0)), _loss(row),
                    str((row.get("eval") or {}).get("pairs", 0)), counts, rate,
                    "yes" if row["promoted"] else "no", row["best_after"]])
    return out


COLUMNS = ["iteration", "trained from", "train rows", "loss (first -> last)", "held-out pairs",
           "win / tie / loss", "win rate [95% CI]", "promoted", "best after"]


def render_table(rows: list[dict[str, Any]]) -> str:
    """The iterations as a Markdown table, with each decision's reason below it."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(rows)]
    lines.append("")
    lines += [f"- iteration {row['iteration']}: {row['reason']}" for row in rows]
    return "\n".join(lines) + "\n"
