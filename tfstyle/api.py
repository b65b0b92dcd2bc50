"""The Python API: `stylize` for a picture, `run` for a whole configured run."""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import numpy as np
from absl import logging
from PIL import Image

from tfstyle import images
from tfstyle.config import Config, make_config
from tfstyle.errors import UserError
from tfstyle.images import ImageLike
from tfstyle.transfer import Result, StepCallback, StyleTransfer, optimize


def prepare_images(config: Config, content: Sequence[ImageLike], style: ImageLike
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Content batch [B, H, W, 3] at the configured size and the style image [1, h, w, 3]
    with as many pixels (the same square in --image_size mode), all RGB in [0, 1]."""
    content_images = [images.load_image(item) for item in content]
    size = images.fit_size(content_images[0].size, config.max_size, config.image_size)
    style_image = images.load_image(style)
    style_size = (images.fit_size(style_image.size, square=config.image_size)
                  if config.image_size else images.match_area(style_image.size, size))
    batch = np.stack([images.to_array(image, size) for image in content_images])
    return batch, images.to_array(style_image, style_size)[None]


def resolve_config(config: Optional[Config] = None, **overrides: Any) -> Config:
    if config is None:
        return make_config(**overrides)
    return config.replace(**overrides) if overrides else config


def run_config(config: Config, content: Optional[Sequence[ImageLike]] = None,
        style: Optional[ImageLike] = None, callbacks: Sequence[StepCallback] = ()) -> Result:
    """Stylise with `config`; images default to the config's paths. When config.output is set,
    the result is written there (every save_every steps, at the end, and on Ctrl-C)."""
    if content is None:
        content = [path for path in config.content.split(",") if path]
    style = config.style if style is None else style
    if not content or (isinstance(style, str) and not style):
        raise UserError("Both a content image and a style image are needed (--content, --style).")
    if config.output:
        images.check_output_path(config.output)
    content_batch, style_batch = prepare_images(config, content, style)
    transfer = StyleTransfer(config, content_batch, style_batch)
    logging.info("Stylising %dx%d pixels for %d steps (preset %s).", content_batch.shape[2],
                 content_batch.shape[1], config.steps, config.preset)

    def save(image: np.ndarray, step: int) -> None:
        if config.output:
            images.save_image(image[0], config.output)

    return optimize(transfer, config.steps, save, config.save_every, callbacks)


def stylize(content: Union[ImageLike, Sequence[ImageLike]], style: ImageLike, *,
            config: Optional[Config] = None, callbacks: Sequence[StepCallback] = (),
            **overrides: Any) -> Union[Image.Image, list[Image.Image]]:
    """Paint `content` in the style of `style` and return the result as a PIL image.

    Images may be paths, 'sample:tubingen'-style names, PIL images or arrays. Settings come
    from `config` (default: the default preset) with `overrides` on top, e.g.
    `stylize('photo.jpg', 'sample:starry_night', steps=100, preset='coursera')`.
    A list of content images is optimised as one batch and gives a list of results.
    """
    batch = isinstance(content, (list, tuple))
    result = run_config(resolve_config(config, **overrides), list(content) if batch else [content],
                 style, callbacks)
    pictures = [images.to_pil(image) for image in result.image]
    return pictures if batch else pictures[0]
