"""The optimisation: targets once, then a compiled Adam step on the image, in a loop."""
from __future__ import annotations

import dataclasses
import signal
import threading
import time
from typing import Any, Callable, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tfstyle.config import Config
from tfstyle.costs import content_cost, gram_matrix, total_cost, weighted_style_costs
from tfstyle.errors import UserError
from tfstyle.features import FeatureExtractor

Costs = dict[str, tf.Tensor]
# Called after every step with (step number from 1, costs the step returned as floats).
StepCallback = Callable[[int, dict[str, float]], None]

# The first loss scale for --precision=mixed_float16. Keras' default, 2^15, suits losses near 1;
# ours are 1e5 and more, with gradients of 10-1000 per pixel, and each overflow costs a skipped
# step while the scale halves. The largest scale whose first gradient stayed finite was 2^5 for
# the coursera preset at 48-64 px, 2^10 for it at 400 px, 2^9 for the default preset at 48 px
# and 2^15 at 320 px; and the float16 gradient's error against float32 (1-2%) was the same for
# every scale from 1 up to that limit, so nothing underflows here and the smallest limit costs
# no accuracy. Larger images have smaller per-pixel gradients, hence more room above it.
INITIAL_LOSS_SCALE = 2.0 ** 5


def initial_image(init: str, content: np.ndarray, seed: int) -> np.ndarray:
    """'content', 'content_noise' (content + U(−0.25, 0.25), clipped, as the course does) or
    'noise' (U(0, 1)), for an image [H, W, 3] or a batch [B, H, W, 3].

    Each image of a batch draws its noise from `seed` afresh, so it starts exactly where a run
    of that image alone would (a batch of one draws the same numbers either way)."""
    if content.ndim == 4:
        return np.stack([initial_image(init, image, seed) for image in content])
    rng = np.random.default_rng(seed)
    if init == "content":
        return content.copy()
    if init == "content_noise":
        return np.clip(content + rng.uniform(-0.25, 0.25, content.shape), 0.0, 1.0).astype(np.float32)
    return rng.uniform(0.0, 1.0, content.shape).astype(np.float32)


class StyleTransfer:
    """Holds the targets, the image variable and the optimiser; `step()` runs one update.

    content: [batch, H, W, 3] and style: [1, h, w, 3], RGB in [0, 1]. The images of a batch are
    independent: each has its own costs, gradient and Adam moments, so image i ends exactly as
    a run of content i alone would.
    """

    def __init__(self, config: Config, content: np.ndarray, style: np.ndarray,
                 extractor: Optional[FeatureExtractor] = None) -> None:
        self.config = config
        self.extractor = extractor or FeatureExtractor(
            (config.content_layer, *config.layer_names), config.weights, config.preprocess,
            config.precision)
        self.content_target = self.extractor(content)[config.content_layer]
        style_features = self.extractor(style)
        self.style_grams = [gram_matrix(style_features[name]) for name in config.layer_names]
        self.layer_weights = [weight for _, weight in config.style_layers]
        self.image = tf.Variable(initial_image(config.init, content, config.seed), name="image")
        self.optimizer = tf.keras.optimizers.Adam(
            config.learning_rate, config.beta_1, config.beta_2, config.epsilon)
        # float16 spans only 6e-8 to 65504, so backward gradients can underflow to zero or
        # overflow. The loss is scaled up (the scale halved on overflow, which skips that step,
        # and doubled after 2000 good steps) and the gradient unscaled in float32 before Adam.
        # bfloat16 has float32's exponent range and needs no scaling.
        self.loss_scaling = config.precision == "mixed_float16"
        if self.loss_scaling:
            self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer,
                                                                 INITIAL_LOSS_SCALE)
        self.optimizer.build([self.image])  # no variables may be created inside the XLA step
        self._step = self._compile(config.jit)
        self._compiled = False  # until the first step has run

    def image_costs(self, features: dict[str, tf.Tensor]) -> Costs:
        """J = α·J_content + β·J_style per image of the batch, each [batch], with each weighted
        style layer's term kept for monitoring."""
        content = content_cost(self.content_target, features[self.config.content_layer])
        layers = weighted_style_costs(
            self.style_grams, [features[name] for name in self.config.layer_names],
            self.layer_weights)
        style = tf.add_n(layers)
        total = total_cost(content, style, self.config.alpha, self.config.beta)
        costs = {"total": total, "content": content, "style": style}
        costs.update({f"style/{name}": term for name, term in zip(self.config.layer_names, layers)})
        return costs

    def costs(self, features: dict[str, tf.Tensor]) -> Costs:
        """image_costs() summed over the batch: image i's gradient comes from its terms alone, and
        one scalar per cost is all the loop and the monitors need."""
        return {name: tf.reduce_sum(value) for name, value in self.image_costs(features).items()}

    def _train_step(self) -> Costs:
        with tf.GradientTape() as tape:
            costs = self.costs(self.extractor(self.image))
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

    def _update(self, gradient: tf.Tensor) -> tf.Tensor:
        self.optimizer.apply_gradients([(gradient, self.image)])
        self.image.assign(tf.clip_by_value(self.image, 0.0, 1.0))
        return tf.constant(True)

    def _compile(self, jit: bool) -> Callable[[], Costs]:
        return tf.function(self._train_step, jit_compile=jit)

    def step(self) -> Costs:
        if self._compiled:
            return self._step()
        try:
            costs = self._step()
        except (tf.errors.UnimplementedError, tf.errors.InternalError,
                tf.errors.InvalidArgumentError) as error:
            if not self.config.jit:
                raise
            # XLA is missing or incomplete on some platforms; the plain graph computes the same
            # step. Nothing ran, so retry is safe.
            logging.warning("XLA compilation failed (%s); running without --jit.",
                            str(error).splitlines()[0])
            self.config = self.config.replace(jit=False)
            self._step = self._compile(False)
            costs = self._step()
        self._compiled = True
        return costs

    def result(self) -> np.ndarray:
        return self.image.numpy()


@dataclasses.dataclass
class Result:
    image: np.ndarray  # [batch, H, W, 3] in [0, 1]
    history: list[dict[str, float]]  # costs returned by each step of this call
    steps: int  # the step the image belongs to (fewer than asked if stopped early)
    seconds: float
    interrupted: bool = False
    stopped_by: str = ""  # "SIGINT", "SIGTERM" or "" when the run was not interrupted
    log_dir: str = ""  # this run's TensorBoard directory, when config.logdir is set
    outputs: list[str] = dataclasses.field(default_factory=list)  # files written, one per image


class NonFiniteCost(UserError):
    """A cost became NaN or infinite; the image of the step before is kept."""

    def __init__(self, step: int, cost: str, value: float, precision: str = "float32") -> None:
        advice = ("Activations in float16 overflow above 65504, so --precision=mixed_bfloat16 "
                  "or float32 may help" if precision == "mixed_float16" else
                  "A lower --learning_rate or other weights may help")
        super().__init__(f"The cost '{cost}' became {value} at step {step}; stopped and kept the "
                         f"image of step {step - 1}. {advice}.")
        self.step = step


def first_bad_cost(costs: dict[str, float]) -> Optional[str]:
    """The most specific cost that is not finite (a layer term before the sums it feeds)."""
    rank = {"content": 1, "style": 2, "total": 3}  # layer terms rank 0
    bad = [name for name, value in costs.items() if not np.isfinite(value)]
    return min(bad, key=lambda name: rank.get(name, 0), default=None)


class StopRequests:
    """Turns SIGINT and SIGTERM into a request to stop after the current step, so the step
    finishes and the latest image (and checkpoint) can be written. Only in the main thread,
    where Python allows signal handlers; elsewhere Ctrl-C stays a KeyboardInterrupt."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal_name = ""
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._request)
        return self

    def _request(self, number: int, frame: Any) -> None:
        if self.signal_name:  # a second Ctrl-C means now
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(number).name
        logging.warning("%s received: stopping after this step.", self.signal_name)

    def __exit__(self, *exc: Any) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def optimize(transfer: StyleTransfer, steps: int, save: Callable[[np.ndarray, int], None],
             save_every: int = 0, callbacks: Sequence[StepCallback] = (), start_step: int = 0,
             checkpoint: Optional[Callable[[int], None]] = None,
             checkpoint_every: int = 0) -> Result:
    """Run steps start_step+1 .. `steps`. `save(image, step)` every `save_every` steps and
    always at the end, also when SIGINT/SIGTERM/Ctrl-C stops the run early; `checkpoint(step)`
    every `checkpoint_every` steps and when stopped early. Raises NonFiniteCost (after saving
    the last good image) when a cost goes bad."""
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    done = start_step
    stop = StopRequests()
    interrupted = False
    try:
        with stop:
            for step in range(start_step + 1, steps + 1):
                costs = {name: float(value) for name, value in transfer.step().items()}
                bad = first_bad_cost(costs)
                if bad:
                    save(transfer.result(), done)
                    raise NonFiniteCost(step, bad, costs[bad], transfer.config.precision)
                done = step
                history.append(costs)
                # Written before the callbacks run, so a preview callback shows this step's file.
                if save_every and step % save_every == 0 and step < steps and not stop.signal_name:
                    save(transfer.result(), step)
                for callback in callbacks:
                    callback(step, costs)
                if stop.signal_name:
                    break
                if checkpoint and checkpoint_every and step % checkpoint_every == 0:
                    checkpoint(step)
    except KeyboardInterrupt:
        interrupted = True
        logging.warning("Interrupted after step %d; writing the latest image.", done)
    interrupted = interrupted or bool(stop.signal_name)
    save(transfer.result(), done)
    if checkpoint and (interrupted or (checkpoint_every and done % checkpoint_every)):
        checkpoint(done)
    return Result(transfer.result(), history, done, time.perf_counter() - start, interrupted,
                  stop.signal_name or ("SIGINT" if interrupted else ""))
