"""How fast does each recipe bring the Coursera objective down? Cost against wall time.

    python scripts/convergence.py [--size=256] [--steps=1000] [--plot=convergence.png]

All recipes minimise the same objective, the coursera preset's (pixels in [0, 1], block5_conv4,
α = 10, β = 40, the course's normalisation) at --size × --size, tubingen × starry_night:

  coursera        the course's optimiser: Adam, learning rate 0.01, from content + noise,
                  --steps steps
  adam            tfstyle's Adam settings: learning rate 0.02, from the content image
  lbfgs           L-BFGS from the content image
  coarse_to_fine  L-BFGS from the content image over 3 scales (--size/4, --size/2, --size),
                  --steps/25 steps at each of the two small ones

Each run is timed from its start (targets, compilation and every step included; VGG19 is
loaded once beforehand). The coarse-to-fine recipe's costs before its last scale are those of
smaller images, so only its last scale is plotted and compared. Our recipes stop once they have
run for --budget of the course recipe's time (checked at their last scale). The plot (log cost against seconds) goes to
--plot; the last line printed is the time the best of our recipes needs to reach the cost the
course's recipe ends with, divided by that recipe's time (lower is better).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


import tfstyle
from tfstyle.features import FeatureExtractor

ROOT = Path(__file__).resolve().parents[1]


def recipes(size: int, steps: int) -> dict[str, tfstyle.Config]:
    course = tfstyle.make_config("coursera", image_size=size, steps=steps, save_every=0,
                                 quiet=True)
    ours = dict(init="content", steps=steps)
    return {
        "coursera": course,
        "adam": course.replace(learning_rate=0.02, **ours),
        "lbfgs": course.replace(optimizer="lbfgs", **ours),
        "coarse_to_fine": course.replace(optimizer="lbfgs", scales=3,
                                         scale_steps=max(1, steps // 25), **ours),
    }


class Recorder:
    """A step callback that keeps (seconds since the start, cost) of the last scale's steps and
    stops the run there (as Ctrl-C would) once `budget` seconds have passed."""

    def __init__(self, budget: float = float("inf")) -> None:
        self.start = time.perf_counter()
        self.budget = budget
        self.points: list[tuple[float, float]] = []

    def __call__(self, iterate) -> None:
        if iterate.scale < iterate.scales:
            return
        seconds = time.perf_counter() - self.start
        self.points.append((seconds, iterate.costs["total"]))
        if seconds > self.budget:
            raise KeyboardInterrupt


def time_to_reach(points: list[tuple[float, float]], target: float) -> float:
    """Seconds until the cost first drops to `target` (inf when it never does)."""
    return next((seconds for seconds, cost in points if cost <= target), float("inf"))


def plot(curves: dict[str, list[tuple[float, float]]], target: float, path: Path,
         title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name, points in curves.items():
        seconds, cost = zip(*points)
        axes.plot(seconds, cost, label=name, linewidth=1.6)
    axes.axhline(target, color="grey", linestyle=":", linewidth=1,
                 label="the course recipe's final cost")
    axes.set_yscale("log")
    axes.set_xlabel("seconds (2 CPU cores)")
    axes.set_ylabel("Coursera cost J = 10·J_content + 40·J_style")
    axes.set_title(title, fontsize=10)
    axes.legend()
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=1000, help="steps of the course's recipe")
    parser.add_argument("--budget", type=float, default=0.25,
                        help="our recipes stop after this fraction of the course recipe's time")
    parser.add_argument("--content", default="sample:tubingen")
    parser.add_argument("--style", default="sample:starry_night")
    parser.add_argument("--plot", default="convergence.png")
    parser.add_argument("--json", default="")
    options = parser.parse_args()

    configs = recipes(options.size, options.steps)
    # VGG19 once, before any timing: every recipe shares the cached model.
    FeatureExtractor(["block5_conv4"], configs["coursera"].weights, "none")
    curves: dict[str, list[tuple[float, float]]] = {}
    seconds: dict[str, float] = {}
    for name, config in configs.items():
        budget = float("inf") if name == "coursera" else options.budget * seconds["coursera"]
        recorder = Recorder(budget)
        tfstyle.run_config(config, [options.content], options.style, callbacks=[recorder])
        curves[name], seconds[name] = recorder.points, time.perf_counter() - recorder.start
        print(f"{name}: {len(recorder.points)} steps at the last scale in {seconds[name]:.1f} s, "
              f"cost {recorder.points[0][1]:.4g} -> {recorder.points[-1][1]:.4g}", flush=True)

    target = curves["coursera"][-1][1]
    reach = {name: time_to_reach(points, target) for name, points in curves.items()
             if name != "coursera"}
    best = min(reach, key=reach.get)
    title = (f"tubingen × starry_night, {options.size}×{options.size}, the coursera objective\n"
             f"the course's recipe: {options.steps} Adam steps")
    plot(curves, target, Path(options.plot), title)
    print(f"\nThe course's recipe ends at cost {target:.5g} after {seconds['coursera']:.1f} s.")
    for name, value in reach.items():
        print(f"{name:15} reaches it after {value:8.1f} s ({value / seconds['coursera']:.3f} of "
              "the course's time)")
    if options.json:
        Path(options.json).write_text(json.dumps(
            {"size": options.size, "steps": options.steps, "target": target, "seconds": seconds,
             "reach": reach, "curves": curves}, indent=1))
    print(f"plot: {options.plot}")
    ratio = reach[best] / seconds["coursera"]
    print(f"best recipe ({best}) time to the course recipe's {options.steps}-step cost / that "
          f"recipe's time: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
