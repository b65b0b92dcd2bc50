"""A training run's TensorBoard curves as one picture, for the README's records.

    python scripts/training_curve.py MODEL_DIR [--output=curve.png] [--smooth=25]

Reads every run in MODEL_DIR/logs (the first piece and each --resume-d one, in step order)
and plots cost/content, cost/style and cost/total against the step: each point is the mean of
the last --smooth logged values (a batch's cost is noisy), the raw values faint behind it.
Prints the first and last smoothed value of each.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorflow import make_ndarray

TAGS = ("cost/total", "cost/content", "cost/style")


def curves(model_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{tag: (steps, values)} over every run in model_dir/logs, in step order."""
    points: dict[str, dict[int, float]] = {tag: {} for tag in TAGS}
    for run in sorted((model_dir / "logs").iterdir()):
        events = EventAccumulator(str(run), size_guidance={"tensors": 0})
        events.Reload()
        for tag in TAGS:
            if tag in events.Tags()["tensors"]:
                for event in events.Tensors(tag):
                    points[tag][event.step] = float(make_ndarray(event.tensor_proto))
    return {tag: (np.array(sorted(values)), np.array([values[step] for step in sorted(values)]))
            for tag, values in points.items() if values}


def smoothed(values: np.ndarray, window: int) -> np.ndarray:
    """The mean of each value and the window − 1 before it (fewer at the start)."""
    sums = np.cumsum(np.concatenate([[0.0], values]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--output", type=Path, default=Path("curve.png"))
    parser.add_argument("--smooth", type=int, default=25)
    options = parser.parse_args()
    found = curves(options.model_dir)
    if not found:
        print(f"No costs logged in {options.model_dir / 'logs'}.", file=sys.stderr)
        return 2
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(figsize=(7, 3.5), dpi=100)
    for tag, (steps, values) in found.items():
        line, = axes.plot(steps, smoothed(values, options.smooth), label=tag.split("/")[1])
        axes.plot(steps, values, color=line.get_color(), alpha=0.15, linewidth=0.8)
        trend = smoothed(values, options.smooth)
        print(f"{tag}: {trend[0]:.3f} at step {steps[0]} -> {trend[-1]:.3f} at step {steps[-1]}")
    axes.set_xlabel("step")
    axes.set_ylabel("cost (summed over the batch)")
    axes.set_yscale("log")
    axes.legend()
    axes.set_title(options.model_dir.name)
    figure.tight_layout()
    figure.savefig(options.output)
    print(f"Wrote {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
