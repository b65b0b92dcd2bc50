"""Where the optimisation starts and how it moves from coarse to fine.

With --scales=N the image is optimised at N sizes, each twice the one before and the last at
--max_size (or --image_size). Each scale takes its own content and style targets at its size
and starts from the previous scale's result, upsampled: the small scales settle the large
shapes and the colours cheaply, and the last one only adds detail (Gatys et al. 2017,
"Controlling perceptual factors"). Steps are numbered over the whole run.

With --average_decay the image written is the exponential moving average of the steps'
images, which removes the high-frequency noise a step leaves, and the next scale starts
from it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfstyle import images
from tfstyle.config import Config
from tfstyle.errors import UserError

Size = tuple[int, int]  # (width, height)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One scale of the run: its number (from 1), size and steps first_step+1 .. last_step."""
    scale: int
    size: Size
    first_step: int
    last_step: int

    @property
    def steps(self) -> int:
        return self.last_step - self.first_step


def style_size_at(config: Config, style_size: Size, size: Size) -> Size:
    """The size the style image takes for a generated image of `size`: as many pixels (aspect
    kept; the same square in --image_size mode), times --style_scale on each side, so that a
    larger scale paints larger strokes."""
    scaled = (max(1, round(size[0] * config.style_scale)),
              max(1, round(size[1] * config.style_scale)))
    return scaled if config.image_size else images.match_area(style_size, scaled)


def plan(config: Config, content_size: Size, style_sizes: Sequence[Size],
         names: Sequence[str] = ()) -> list[Stage]:
    """The run's stages for a content image of `content_size` (width, height); refuses a first
    scale at which the content or a style image (see style_size_at) would be too small for
    VGG19, naming it by `names` (the content image's, then each style image's) when given."""
    final = images.fit_size(content_size, config.max_size, config.image_size)
    stages, first = [], 0
    for index, steps in enumerate(config.steps_per_scale):
        halvings = config.scales - 1 - index
        if config.image_size:
            side = max(1, round(config.image_size / 2 ** halvings))
            size = (side, side)
        else:
            size = images.fit_size(final, round(max(final) / 2 ** halvings))
        stages.append(Stage(index + 1, size, first, first + steps))
        first += steps
    size = stages[0].size
    checked = [("image", content_size, size), *(
        ("style image", style_size, style_size_at(config, style_size, size))
        for style_size in style_sizes)]
    for position, (what, original, (width, height)) in enumerate(checked):
        if min(width, height) < images.MIN_SIDE:
            size_flag = (f"--image_size={config.image_size}" if config.image_size
                         else f"--max_size={config.max_size}")
            remedies = [f"a larger {size_flag.split('=')[0]}"]
            if config.scales > 1:
                remedies.append("fewer --scales")
            if what == "style image":
                remedies.append("a larger --style_scale")
            name = f" '{names[position]}'" if position < len(names) and names[position] else ""
            where = (f"at the first of --scales={config.scales} " if config.scales > 1 else "")
            raise UserError(f"The {what}{name} ({original[0]}x{original[1]}) would be "
                            f"{width}x{height} pixels {where}with {size_flag}, and VGG19 needs "
                            f"at least {images.MIN_SIDE} on each side; use "
                            f"{' or '.join(remedies)}.")
    return stages


def stage_of(stages: list[Stage], step: int) -> Stage:
    """The stage that step `step` belongs to (its image has that stage's size); step 0 is
    before the first."""
    return next(stage for stage in stages if step <= stage.last_step)


def initial_image(init: str, content: np.ndarray, seed: int, noise: float = 0.0,
                  picture: Optional[np.ndarray] = None) -> np.ndarray:
    """Where the optimisation starts, for an image [H, W, 3] or a batch [B, H, W, 3]:
    'content', 'content_noise' (content + U(−0.25, 0.25), clipped, as the course does), 'noise'
    (U(0, 1)), or `picture` [H, W, 3] (--init=style or an image file, at the content's size).
    With `noise` = n > 0, a content or picture start is blended with noise:
    (1 − n)·image + n·U(0, 1).

    Each image of a batch draws its noise from `seed` afresh, so it starts exactly where a run
    of that image alone would (a batch of one draws the same numbers either way)."""
    if content.ndim == 4:
        return np.stack([initial_image(init, image, seed, noise, picture) for image in content])
    rng = np.random.default_rng(seed)
    if init == "noise":
        return rng.uniform(0.0, 1.0, content.shape).astype(np.float32)
    if init == "content_noise":
        return np.clip(content + rng.uniform(-0.25, 0.25, content.shape), 0.0, 1.0).astype(np.float32)
    start = content if init == "content" else picture
    if noise:
        return ((1.0 - noise) * start + noise * rng.uniform(0.0, 1.0, start.shape)).astype(np.float32)
    return start.astype(np.float32, copy=True)


def upsample(image: np.ndarray, size: Size) -> np.ndarray:
    """A batch [B, h, w, 3] resized (bicubic) to `size` (width, height), kept in [0, 1]."""
    width, height = size
    resized = tf.image.resize(image, (height, width), method="bicubic")
    return np.clip(resized.numpy(), 0.0, 1.0).astype(np.float32)


class Average:
    """The bias-corrected exponential moving average of the image over the steps:
    A_t = Σ_i (1 − d)·d^(t−i)·x_i / (1 − d^t), the correction Adam applies to its moments, so
    that the first steps' average is not pulled towards zero."""

    def __init__(self, image: tf.Variable, decay: float) -> None:
        self.image = image
        self.decay = decay
        self.total = tf.Variable(tf.zeros_like(image), name="average")
        self.weight = tf.Variable(0.0, name="average_weight")  # 1 − d^t
        self._update = tf.function(self._step)

    def _step(self) -> None:
        self.total.assign(self.decay * self.total + (1.0 - self.decay) * self.image)
        self.weight.assign(self.decay * self.weight + (1.0 - self.decay))

    def reset(self) -> None:
        """No step taken in yet."""
        self.total.assign(tf.zeros_like(self.total))
        self.weight.assign(0.0)

    def update(self) -> None:
        """Take in the image as it is after a step."""
        self._update()

    def value(self) -> np.ndarray:
        if float(self.weight) == 0.0:  # no step yet
            return self.image.numpy()
        return (self.total / self.weight).numpy()

    def trackables(self) -> dict[str, Any]:
        return {"average": self.total, "average_weight": self.weight}
