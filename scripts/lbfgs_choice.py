"""Which L-BFGS? SciPy's L-BFGS-B against TensorFlow Probability's lbfgs_minimize, measured.

    python scripts/lbfgs_choice.py [--size=256] [--iterations=100]

Both minimise the default preset's objective at one scale (--size px, tubingen × starry_night)
from the content image, each with a compiled (XLA) value-and-gradient of the same objective:

  scipy  scipy.optimize.minimize(method="L-BFGS-B"): the pixels kept in [0, 1] as bounds, the
         iterations driven from Python (what tfstyle.optimizers.LBFGS does)
  tfp    tfp.optimizer.lbfgs_minimize, unconstrained, so on z with pixels = sigmoid(z) (the
         reparametrisation that keeps them in [0, 1]), its whole loop one TF graph, run
         `--chunk` iterations at a time (continuing from its previous state) so that a
         progress bar, Ctrl-C and checkpoints would still get control between chunks

Prints, for each, the iterations done, the evaluations of the objective they took, the seconds
(compilation included), and the cost reached; then the seconds each needed to reach the higher
of the two final costs. TensorFlow Probability is not a tfstyle dependency: `pip install
tensorflow-probability tf-keras` to run its half.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import scipy.optimize
import tensorflow as tf

import tfstyle
from tfstyle import api, images
from tfstyle.objective import Objective

Curve = list[tuple[float, float]]  # (seconds since the start, cost) after each iteration


def objective_at(size: int) -> tuple[Objective, np.ndarray]:
    config = tfstyle.make_config(scales=1, max_size=size)
    inputs = api.load_inputs(config, ["sample:tubingen"], ["sample:starry_night"])
    width_height = images.fit_size(inputs.shape, size)
    content, styles = api.arrays_at(config, inputs, width_height)
    return Objective.of_images(config, api.extractor_for(config), content, styles,
                               width_height), content


def run_scipy(objective: Objective, start: np.ndarray, iterations: int) -> tuple[Curve, int]:
    evaluate = tf.function(objective.value_and_gradient, jit_compile=True)
    shape, counts, curve = start.shape, {"evaluations": 0}, []
    begin = time.perf_counter()

    def value_and_gradient(pixels: np.ndarray) -> tuple[float, np.ndarray]:
        costs, gradient = evaluate(tf.constant(pixels.reshape(shape), tf.float32))
        counts["evaluations"] += 1
        counts["last"] = float(costs["total"])
        return counts["last"], gradient.numpy().astype(np.float64).ravel()

    def callback(intermediate_result: scipy.optimize.OptimizeResult) -> None:
        curve.append((time.perf_counter() - begin, counts["last"]))

    scipy.optimize.minimize(value_and_gradient, start.astype(np.float64).ravel(), jac=True,
                            method="L-BFGS-B", bounds=scipy.optimize.Bounds(0.0, 1.0),
                            callback=callback,
                            options=dict(maxiter=iterations, maxfun=20 * iterations, ftol=0.0,
                                         gtol=0.0, maxcor=10))
    return curve, counts["evaluations"]


def run_tfp(objective: Objective, start: np.ndarray, iterations: int,
            chunk: int) -> tuple[Curve, int]:
    import tensorflow_probability as tfp

    evaluate = tf.function(objective.value_and_gradient, jit_compile=True)

    def value_and_gradient(z: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # TFP reads the leading dimensions of the position as a batch of problems: z is flat.
        pixels = tf.sigmoid(tf.reshape(z, start.shape))
        costs, gradient = evaluate(pixels)
        return costs["total"], tf.reshape(gradient * pixels * (1.0 - pixels), [-1])

    @tf.function
    def iterate(z: tf.Tensor, previous, limit: tf.Tensor):
        return tfp.optimizer.lbfgs_minimize(
            value_and_gradient, initial_position=z if previous is None else None,
            previous_optimizer_results=previous, num_correction_pairs=10, max_iterations=limit,
            tolerance=0.0, x_tolerance=0.0, f_relative_tolerance=0.0)

    clipped = np.clip(start, 1e-3, 1 - 1e-3)
    z = tf.constant(np.log(clipped / (1 - clipped)).ravel(), tf.float32)
    curve, results, begin = [], None, time.perf_counter()
    while len(curve) < iterations:
        results = iterate(z, results, tf.constant(len(curve) + chunk))
        done = int(results.num_iterations)
        if done == len(curve):  # converged or the line search gave up
            break
        curve.extend([(time.perf_counter() - begin, float(results.objective_value))]
                     * (done - len(curve)))
    return curve, int(results.num_objective_evaluations)


def time_to_reach(curve: Curve, target: float) -> float:
    return next((seconds for seconds, cost in curve if cost <= target), float("inf"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--chunk", type=int, default=10,
                        help="TFP iterations per call (between which a run gets control)")
    options = parser.parse_args()
    objective, content = objective_at(options.size)
    curves, evaluations = {}, {}
    curves["scipy"], evaluations["scipy"] = run_scipy(objective, content, options.iterations)
    try:
        curves["tfp"], evaluations["tfp"] = run_tfp(objective, content, options.iterations,
                                                    options.chunk)
    except ImportError:
        print("tensorflow_probability is not installed: pip install tensorflow-probability "
              "tf-keras, then run this again.")
    print(f"\nthe default objective at {content.shape[2]}x{content.shape[1]}, from the content "
          f"image, {options.iterations} iterations")
    print(f"{'':6} {'iterations':>10} {'evaluations':>11} {'seconds':>8} {'final cost':>11}")
    for name, curve in curves.items():
        print(f"{name:6} {len(curve):10} {evaluations[name]:11} {curve[-1][0]:8.1f} "
              f"{curve[-1][1]:11.5g}")
    if len(curves) == 2:
        target = max(curve[-1][1] for curve in curves.values())  # both reach it
        for name, curve in curves.items():
            print(f"{name} reaches cost {target:.5g} after {time_to_reach(curve, target):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
