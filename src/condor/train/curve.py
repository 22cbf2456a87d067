"""The loss curve of a training run as a PNG, drawn with matplotlib (headless, the Agg canvas).

One line of loss against optimizer step, from ``training_log.jsonl``. Leaves out smoothing and
evaluation curves: a short run has few points, and they are plotted as they are.
"""

from __future__ import annotations

from pathlib import Path

CURVE_FILE = "loss.png"


def draw_loss_curve(points: list[tuple[int, float]], path: Path, title: str) -> Path | None:
    """Write the curve to ``path``; None (and nothing written) without points or without matplotlib."""
    if not points:
        return None
    try:
        from matplotlib.figure import Figure
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:
        return None
    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    steps, losses = zip(*points)
    axes.plot(steps, losses, marker="o" if len(points) < 30 else None, linewidth=1.5)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("training loss")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(str(path))
    return path
