"""The optimisation: targets once, then a compiled Adam step on the image, in a loop."""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from tfstyle.config import Config
from tfstyle.costs import content_cost, gram_matrix, total_cost, weighted_style_costs
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
        self.optimizer.apply_gradients([(gradient, self.image)])
        self.image.assign(tf.clip_by_value(self.image, 0.0, 1.0))
        return costs

    def _compile(self, jit: bool) -> Callable[[], Costs]:
        return tf.function(self._train_step, jit_compile=jit)

    def step(self) -> Costs:
        try:
            return self._step()
        except (tf.errors.UnimplementedError, tf.errors.InternalError,
                tf.errors.InvalidArgumentError) as error:
            if not self.config.jit or self.optimizer.iterations.numpy() > 0:
                raise
            # XLA is missing or broken on some platforms; the plain graph gives the same result.
            logging.warning("XLA compilation failed (%s); running without --jit.",
                            str(error).splitlines()[0])
            self.config = self.config.replace(jit=False)
            self._step = self._compile(False)
            return self._step()

    def result(self) -> np.ndarray:
        return self.image.numpy()


@dataclasses.dataclass
class Result:
    image: np.ndarray  # [batch, H, W, 3] in [0, 1]
    history: list[dict[str, float]]  # costs returned by each step
    steps: int  # steps done (fewer than asked if interrupted)
    seconds: float
    interrupted: bool = False


def optimize(transfer: StyleTransfer, steps: int, save: Callable[[np.ndarray, int], None],
             save_every: int = 0, callbacks: Sequence[StepCallback] = ()) -> Result:
    """Run `steps` steps; `save(image, step)` every `save_every` steps and always at the end,
    also when Ctrl-C stops the run early."""
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    interrupted = False
    try:
        for step in range(1, steps + 1):
            costs = {name: float(value) for name, value in transfer.step().items()}
            history.append(costs)
            for callback in callbacks:
                callback(step, costs)
            if save_every and step % save_every == 0 and step < steps:
                save(transfer.result(), step)
    except KeyboardInterrupt:
        interrupted = True
        logging.warning("Interrupted after %d steps; writing the latest image.", len(history))
    save(transfer.result(), len(history))
    return Result(transfer.result(), history, len(history), time.perf_counter() - start,
                  interrupted)
