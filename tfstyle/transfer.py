"""The optimisation: targets once, then a compiled Adam step on the image, in a loop."""
from __future__ import annotations

import dataclasses
import signal
import threading
import time
from typing import Any, Callable, Optional, Sequence

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


def initial_image(init: str, content: np.ndarray, seed: int) -> np.ndarray:
    """'content', 'content_noise' (content + U(−0.25, 0.25), clipped, as the course does) or
    'noise' (U(0, 1))."""
    rng = np.random.default_rng(seed)
    if init == "content":
        return content.copy()
    if init == "content_noise":
        return np.clip(content + rng.uniform(-0.25, 0.25, content.shape), 0.0, 1.0).astype(np.float32)
    return rng.uniform(0.0, 1.0, content.shape).astype(np.float32)


class StyleTransfer:
    """Holds the targets, the image variable and the optimiser; `step()` runs one update.

    content: [batch, H, W, 3] and style: [1, h, w, 3], RGB in [0, 1].
    """

    def __init__(self, config: Config, content: np.ndarray, style: np.ndarray,
                 extractor: Optional[FeatureExtractor] = None) -> None:
        self.config = config
        self.extractor = extractor or FeatureExtractor(
            (config.content_layer, *config.layer_names), config.weights, config.preprocess)
        self.content_target = self.extractor(content)[config.content_layer]
        style_features = self.extractor(style)
        self.style_grams = [gram_matrix(style_features[name]) for name in config.layer_names]
        self.layer_weights = [weight for _, weight in config.style_layers]
        self.image = tf.Variable(initial_image(config.init, content, config.seed), name="image")
        self.optimizer = tf.keras.optimizers.Adam(
            config.learning_rate, config.beta_1, config.beta_2, config.epsilon)
        self.optimizer.build([self.image])  # no variables may be created inside the XLA step
        self._step = self._compile(config.jit)
        self._compiled = False  # until the first step has run

    def costs(self, features: dict[str, tf.Tensor]) -> Costs:
        """J = α·J_content + β·J_style, with each weighted style layer's term kept for monitoring;
        summed over the batch (the images are independent, so each gets its own gradient)."""
        content = content_cost(self.content_target, features[self.config.content_layer])
        layers = weighted_style_costs(
            self.style_grams, [features[name] for name in self.config.layer_names],
            self.layer_weights)
        style = tf.add_n(layers)
        total = total_cost(content, style, self.config.alpha, self.config.beta)
        costs = {"total": total, "content": content, "style": style}
        costs.update({f"style/{name}": term for name, term in zip(self.config.layer_names, layers)})
        return {name: tf.reduce_sum(value) for name, value in costs.items()}

    def _train_step(self) -> Costs:
        with tf.GradientTape() as tape:
            costs = self.costs(self.extractor(self.image))
        gradient = tape.gradient(costs["total"], self.image)
        # A non-finite step must not spoil the image or Adam's moments: skip the update and let
        # the loop stop on the bad costs, so the last good image survives.
        finite = tf.math.is_finite(costs["total"]) & tf.reduce_all(tf.math.is_finite(gradient))
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
            # XLA is missing or incomplete on some platforms (and has no deterministic max-pool
            # gradient); the plain graph computes the same step. Nothing ran, so retry is safe.
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


class NonFiniteCost(UserError):
    """A cost became NaN or infinite; the image of the step before is kept."""

    def __init__(self, step: int, cost: str, value: float) -> None:
        super().__init__(f"The cost '{cost}' became {value} at step {step}; stopped and kept the "
                         f"image of step {step - 1}. A lower --learning_rate or other weights "
                         "may help.")
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
                    raise NonFiniteCost(step, bad, costs[bad])
                done = step
                history.append(costs)
                for callback in callbacks:
                    callback(step, costs)
                if stop.signal_name:
                    break
                if save_every and step % save_every == 0 and step < steps:
                    save(transfer.result(), step)
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
