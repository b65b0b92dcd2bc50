"""The optimisers of the image, behind one small interface.

Both take the objective and the image variable and offer
- run(first_step, last_step, after_step): steps first_step+1 .. last_step, calling
  after_step(step, costs) after each one; it returns True to stop early;
- trackables(): their state for a checkpoint, beside the image;
- learning_rate: for monitoring (None when there is none);
- reset(): back to the state before the first step, for a new start of the same problem;
and raise NonFiniteCosts, leaving the image at the last good step, when a cost is NaN or
infinite.

Adam is one compiled step: forward pass, costs, gradient, update and clip to [0, 1].
L-BFGS is SciPy's L-BFGS-B, which keeps the pixels in [0, 1] as bounds rather than by
clipping, driven by a compiled value-and-gradient; one step is one of its iterations (a few
evaluations at most, usually one). The paper's optimiser: it converges in far fewer steps.
"""
from __future__ import annotations

from typing import Any, Callable

import keras
import numpy as np
import scipy.optimize
import tensorflow as tf
from absl import logging

from tfstyle.config import Config
from tfstyle.objective import Costs, Objective, first_bad_cost

# Called after each step with (step number, costs as floats); True stops the run.
AfterStep = Callable[[int, dict[str, float]], bool]

# The first loss scale for --precision=mixed_float16. Keras' default, 2^15, suits losses near 1;
# ours are 1e5 and more, with gradients of 10-1000 per pixel, and each overflow costs a skipped
# step while the scale halves. The largest scale whose first gradient stayed finite was 2^5 for
# the coursera preset at 48-64 px, 2^10 for it at 400 px, 2^9 for the default preset at 48 px
# and 2^15 at 320 px; and the float16 gradient's error against float32 (1-2%) was the same for
# every scale from 1 up to that limit, so nothing underflows here and the smallest limit costs
# no accuracy. Larger images have smaller per-pixel gradients, hence more room above it.
INITIAL_LOSS_SCALE = 2.0 ** 5

# L-BFGS-B's memory: the curvature pairs it keeps (SciPy's default). Each costs two float64
# copies of the image.
LBFGS_MEMORY = 10


class NonFiniteCosts(Exception):
    """A step's costs were NaN or infinite; the image is still the last good step's."""

    def __init__(self, costs: dict[str, float]) -> None:
        super().__init__(f"non-finite cost {first_bad_cost(costs)}")
        self.costs = costs


class Compiled:
    """`fn` as a tf.function, XLA-compiled when `jit`. XLA is missing or incomplete on some
    platforms; where the first call fails to compile, the plain graph computes the same thing
    (nothing ran, so retrying is safe)."""

    def __init__(self, fn: Callable[..., Any], jit: bool) -> None:
        self.fn = fn
        self.jit = jit
        self._call = tf.function(fn, jit_compile=jit)
        self._called = False

    def __call__(self, *args: Any) -> Any:
        if self._called:
            return self._call(*args)
        try:
            result = self._call(*args)
        except (tf.errors.UnimplementedError, tf.errors.InternalError,
                tf.errors.InvalidArgumentError) as error:
            if not self.jit:
                raise
            logging.warning("XLA compilation failed (%s); running without --jit.",
                            str(error).splitlines()[0])
            self.jit = False
            self._call = tf.function(self.fn)
            result = self._call(*args)
        self._called = True
        return result


def as_floats(costs: Costs) -> dict[str, float]:
    return {name: float(value) for name, value in costs.items()}


class Adam:
    """Keras' Adam on the pixels. The images of a batch are independent: each has its own
    costs, gradient and moments, so image i ends exactly as a run of it alone would."""

    name = "adam"

    def __init__(self, config: Config, objective: Objective, image: tf.Variable) -> None:
        self.objective = objective
        self.image = image
        self.optimizer = keras.optimizers.Adam(config.learning_rate, config.beta_1,
                                               config.beta_2, config.epsilon)
        # float16 spans only 6e-8 to 65504, so backward gradients can underflow to zero or
        # overflow. The loss is scaled up (the scale halved on overflow, which skips that step,
        # and doubled after 2000 good steps) and the gradient unscaled in float32 before Adam.
        # bfloat16 has float32's exponent range and needs no scaling.
        self.loss_scaling = config.precision == "mixed_float16"
        if self.loss_scaling:
            self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer,
                                                                 INITIAL_LOSS_SCALE)
        self.optimizer.build([image])  # no variables may be created inside the XLA step
        self._initial_state = [variable.numpy() for variable in self.optimizer.variables]
        if objective.tiled:
            # The costs and gradient come tile by tile (tiles.py); only the update is compiled.
            self._apply = Compiled(self._apply_gradient, config.jit)
            self.step = self._tiled_step
        else:
            self.step = Compiled(self._train_step, config.jit)

    @property
    def learning_rate(self) -> float:
        return float(self.optimizer.learning_rate)  # evaluates a schedule, if any

    def trackables(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer}

    def reset(self) -> None:
        """The moments, the step count and the loss scale as they were before the first step."""
        for variable, value in zip(self.optimizer.variables, self._initial_state):
            variable.assign(value)

    def _train_step(self) -> Costs:
        with tf.GradientTape() as tape:
            costs = self.objective.costs(self.image)
            # Plain Adam returns the loss unchanged; LossScaleOptimizer multiplies it by its scale.
            objective = self.optimizer.scale_loss(costs["total"])
        gradient = tape.gradient(objective, self.image)
        # A non-finite step must not spoil the image or Adam's moments: skip the update and let
        # the loop stop on the bad costs, so the last good image survives. With loss scaling, an
        # overflowing gradient under finite costs is routine: LossScaleOptimizer itself skips
        # that update and halves its scale, and the loop goes on since the costs are finite.
        finite = tf.math.is_finite(costs["total"])
        if not self.loss_scaling:
            finite &= tf.reduce_all(tf.math.is_finite(gradient))
        tf.cond(finite, lambda: self._update(gradient), lambda: tf.constant(False))
        return costs

    def _tiled_step(self) -> Costs:
        costs, gradient = self.objective.value_and_gradient(self.image)
        self._apply(costs["total"], gradient)
        return costs

    def _apply_gradient(self, total: tf.Tensor, gradient: tf.Tensor) -> None:
        finite = tf.math.is_finite(total) & tf.reduce_all(tf.math.is_finite(gradient))
        tf.cond(finite, lambda: self._update(gradient), lambda: tf.constant(False))

    def _update(self, gradient: tf.Tensor) -> tf.Tensor:
        self.optimizer.apply_gradients([(gradient, self.image)])
        self.image.assign(tf.clip_by_value(self.image, 0.0, 1.0))
        return tf.constant(True)

    def run(self, first_step: int, last_step: int, after_step: AfterStep) -> None:
        for step in range(first_step + 1, last_step + 1):
            costs = as_floats(self.step())
            if first_bad_cost(costs):
                raise NonFiniteCosts(costs)
            if after_step(step, costs):
                return


class LBFGS:
    """SciPy's L-BFGS-B on the pixels, within the [0, 1] box. A batch is one problem (the sum
    of the images' costs): its images share the line search, so they end close to, not
    exactly at, where each would alone."""

    name = "lbfgs"
    learning_rate = None

    def __init__(self, config: Config, objective: Objective, image: tf.Variable) -> None:
        self.objective = objective
        self.image = image
        # SciPy's L-BFGS-B keeps its curvature memory to itself, so a checkpoint cannot hold it:
        # with checkpoints, every run (resumed or not) starts it afresh at each checkpoint's step,
        # and a resumed run repeats the uninterrupted one exactly.
        self.restart_every = config.checkpoint_every
        # A tiled objective compiles its own passes, tile by tile.
        self.evaluate = (objective.value_and_gradient if objective.tiled
                         else Compiled(self._value_and_gradient, config.jit))
        self.evaluations = 0

    def trackables(self) -> dict[str, Any]:
        return {}

    def reset(self) -> None:
        """Nothing to clear: every run() starts SciPy's L-BFGS-B afresh."""

    def _value_and_gradient(self, image: tf.Tensor) -> tuple[Costs, tf.Tensor]:
        return self.objective.value_and_gradient(image)

    def run(self, first_step: int, last_step: int, after_step: AfterStep) -> None:
        step = first_step
        while step < last_step:
            end = last_step
            if self.restart_every:
                end = min(last_step, (step // self.restart_every + 1) * self.restart_every)
            done, stop = self._minimize(step, end, after_step)
            if stop or done < end:
                return
            step = done

    def _minimize(self, first_step: int, last_step: int, after_step: AfterStep
                  ) -> tuple[int, bool]:
        """One L-BFGS-B run from the image over steps first_step+1 .. last_step; returns the
        last step done and whether after_step asked to stop."""
        shape = self.image.shape
        accepted: dict[str, float] = {}  # the costs of the last evaluation: the accepted point's
        progress = {"step": first_step, "stop": False}

        def value_and_gradient(pixels: np.ndarray) -> tuple[float, np.ndarray]:
            costs, gradient = self.evaluate(tf.constant(pixels.reshape(shape), tf.float32))
            costs = as_floats(costs)
            self.evaluations += 1
            if first_bad_cost(costs):
                raise NonFiniteCosts(costs)
            accepted.clear()
            accepted.update(costs)
            return costs["total"], gradient.numpy().astype(np.float64).ravel()

        def callback(intermediate_result: scipy.optimize.OptimizeResult) -> None:
            progress["step"] += 1
            self.image.assign(intermediate_result.x.reshape(shape).astype(np.float32))
            if after_step(progress["step"], dict(accepted)):
                progress["stop"] = True
                raise StopIteration  # SciPy ends the run and returns the current point

        steps = last_step - first_step
        result = scipy.optimize.minimize(
            value_and_gradient, self.image.numpy().astype(np.float64).ravel(), jac=True,
            method="L-BFGS-B", bounds=scipy.optimize.Bounds(0.0, 1.0), callback=callback,
            # Run every step asked for: no tolerance stops it, only its line search giving up.
            options=dict(maxiter=steps, maxfun=20 * steps, ftol=0.0, gtol=0.0,
                         maxcor=LBFGS_MEMORY))
        if progress["step"] < last_step and not progress["stop"]:
            logging.info("L-BFGS ended after step %d of %d: %s", progress["step"], last_step,
                         result.message)
        return progress["step"], progress["stop"]


OPTIMIZERS = {"adam": Adam, "lbfgs": LBFGS}
Optimizer = Any  # Adam or LBFGS


def make_optimizer(config: Config, objective: Objective, image: tf.Variable) -> Optimizer:
    return OPTIMIZERS[config.optimizer](config, objective, image)


def optimizer_memory_bytes(config: Config, pixels: int) -> int:
    """What the optimiser keeps beside the step: Adam two float32 moments; L-BFGS-B its memory
    pairs and a few more float64 copies of the image (SciPy's work arrays, x, the gradient)."""
    values = 3 * pixels
    if config.optimizer == "lbfgs":
        return 8 * values * (2 * LBFGS_MEMORY + 8)
    return 4 * values * 2
