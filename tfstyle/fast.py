"""Applying a trained feed-forward network (see training.py): a picture in one pass."""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import keras
import numpy as np
from PIL import Image

from tfstyle import adain, api, images, networks
from tfstyle.config import Config, make_config, split_paths
from tfstyle.errors import UserError
from tfstyle.features import FeatureExtractor
from tfstyle.images import ImageLike
from tfstyle.style import Style, blend_weights

MODEL_FILE = "model.keras"


class FastModel:
    """A trained network as a callable: model(image) is the image (a path, 'sample:NAME', a
    PIL image or an array) stylised, as a PIL image at `max_size` on its longest side (0: its
    own size); a texture network's model.texture(size) is a texture of any size; an AdaIN
    decoder's model(image, style=...) paints in any style."""

    def __init__(self, network: keras.Model, path: str) -> None:
        self.network = network
        self.path = path
        self.styles = int(network.inputs[1].shape[-1]) if len(network.inputs) == 2 else 1
        self.levels = networks.texture_levels(network)  # 0: it paints photos
        self.arbitrary = adain.is_decoder(network)  # any style, given at run time (AdaIN)
        self._encoders: dict[tuple, FeatureExtractor] = {}
        # How it was trained: the record tfstyle.train writes beside the model, if any.
        try:
            self.settings = json.loads(Path(path).with_suffix(".json").read_text())
        except (OSError, ValueError):
            self.settings = {}

    def __call__(self, image: ImageLike, max_size: int = 0,
                 style_weights: Optional[Sequence[float]] = None,
                 style: Union[None, ImageLike, Sequence[ImageLike]] = None, alpha: float = 1.0
                 ) -> Image.Image:
        """`image` stylised; an AdaIN network takes the `style` image(s) (blended by
        `style_weights`) at the strength `alpha` from 0 (the photo) to 1."""
        if self.levels:
            raise UserError(f"'{self.path}' is a texture network: it takes no image; call "
                            "its texture((width, height)).")
        picture = images.load_image(image)
        size = images.fit_size(picture.size, max_size) if max_size else picture.size
        styles = [] if style is None else api.names(style)
        config = make_config(style_weights=tuple(style_weights or ()), alpha=alpha)
        self.check_run(config, len(styles))
        if not self.arbitrary:
            return images.to_pil(self.stylise(images.to_array(picture, size)[None],
                                              style_weights)[0])
        batch, painted = api.arrays_at(config, api.load_inputs(config, [picture], styles), size)
        return images.to_pil(self.paint(batch, painted, alpha)[0])

    def check_run(self, config: Config, count: int) -> None:
        """Refuse what has no part in a run of this network with `config` and `count` style
        images: style images, masks, --alpha or histogram colours given to a network whose
        style is its own, none given to an AdaIN network, and AdaIN style weights or masks of
        another count or a strength outside [0, 1]."""
        preset = (f" (--preset={config.preset} sets --alpha={config.alpha:g}; leave it out)"
                  if config.preset != "default" else "")
        if not self.arbitrary:
            given = [flag for flag, present in (
                ("--style", count), ("--style_masks", config.style_masks),
                ("--alpha", config.alpha != 1),
                ("--preserve_colors=histogram", config.preserve_colors == "histogram"))
                if present]
            if given:
                raise UserError(f"{' and '.join(given)} {'has' if len(given) == 1 else 'have'} "
                                "no part in a run with this "
                                "--model: the network paints the style(s) it was trained on "
                                f"(--style_weights mixes a conditional network's){preset}.")
            return
        if not count:
            raise UserError(f"'{self.path}' is an AdaIN network: it paints any style, so give "
                            "one with --style.")
        masks = len(split_paths(config.style_masks))
        for flag, noun, number in (("--style_weights", "weight", len(config.style_weights)),
                                   ("--style_masks", "mask", masks)):
            if number and number != count:
                raise UserError(f"{flag} has {number} {noun}(s) for {count} style image(s); "
                                "give one per style image.")
        if not 0 <= config.alpha <= 1:
            raise UserError(f"With an AdaIN --model, --alpha is the style's strength, from 0 "
                            f"(the photo) to 1 (all style); not {config.alpha:g}{preset}.")

    def encoder(self, config: Config) -> FeatureExtractor:
        """An AdaIN network's encoder: VGG19 preprocessed and pooled as in its training (its
        record), from `config`'s --weights and precision; built once for each."""
        trained = {name: self.settings[name] for name in ("preprocess", "pooling")
                   if name in self.settings}
        config = config.replace(**trained)
        key = (config.weights, config.precision, config.preprocess, config.pooling)
        if key not in self._encoders:
            self._encoders[key] = adain.encoder(config)
        return self._encoders[key]

    def paint(self, batch: np.ndarray, styles: Sequence[Style], alpha: float = 1.0,
              config: Optional[Config] = None) -> np.ndarray:
        """An AdaIN network's pictures of photos [batch, H, W, 3] in `styles` (each style
        image [1 or batch, h, w, 3] in [0, 1], weight, region [H, W]) at the strength
        `alpha`; VGG19 from `config`'s --weights (default: auto)."""
        config = (config or make_config()).replace(alpha=alpha)
        self.check_run(config, len(styles))
        return adain.stylise(self.network, self.encoder(config), batch, styles, alpha)

    def texture(self, size: tuple[int, int], seed: int = 0) -> Image.Image:
        """A texture network's texture of `size` = (W, H), from the noise of `seed`."""
        if not self.levels:
            raise UserError(f"'{self.path}' paints photos: give it a content image.")
        width, height = size
        noise = networks.texture_noise(1, height, width, self.levels, seed)
        return images.to_pil(networks.apply_network(self.network, noise).numpy()[0])

    def mix(self, style_weights: Sequence[float] = ()) -> Optional[list[float]]:
        """The style weights a conditional network is given (each style's share, summing to
        1; none given: equal shares); None for a network of one style."""
        if self.styles == 1:
            if style_weights:
                raise UserError(f"'{self.path}' was trained on one style; --style_weights mixes "
                                "the styles of a network trained with --method=conditional.")
            return None
        if not style_weights:
            return [1.0 / self.styles] * self.styles
        if len(style_weights) != self.styles:
            raise UserError(f"--style_weights has {len(style_weights)} weight(s), and "
                            f"'{self.path}' has {self.styles} styles ({self.style_names}); give "
                            "one per style.")
        return blend_weights(style_weights, self.styles)

    @property
    def style_names(self) -> str:
        return self.settings.get("style", "")

    def stylise(self, batch: np.ndarray, style_weights: Optional[Sequence[float]] = None
                ) -> np.ndarray:
        """Images [batch, H, W, 3] in [0, 1] stylised, same shape; `style_weights` mix the
        styles of a conditional network (see mix)."""
        if self.arbitrary:
            raise UserError(f"'{self.path}' is an AdaIN network: it needs style images "
                            "(paint).")
        mix = self.mix(style_weights or ())
        return networks.apply_network(self.network, batch, mix).numpy()


_loaded: dict[tuple[str, float], FastModel] = {}


SAMPLES_DIRECTORY = os.path.join(os.path.dirname(__file__), "samples")


def sample_models() -> list[str]:
    """The names of the bundled networks ('sample:NAME')."""
    return sorted(name[:-len(".keras")] for name in os.listdir(SAMPLES_DIRECTORY)
                  if name.endswith(".keras"))


def model_path(path: Union[str, os.PathLike]) -> str:
    """The model file `path` names: itself, MODEL_FILE in the training directory it is, or
    for 'sample:NAME' the bundled network NAME."""
    path = str(path)
    if path.startswith("sample:"):
        name = path[len("sample:"):]
        if name not in sample_models():
            raise UserError(f"Unknown sample network '{name}'; the bundled ones are: "
                            f"{', '.join(sample_models()) or 'none'}.")
        return os.path.join(SAMPLES_DIRECTORY, f"{name}.keras")
    return os.path.join(path, MODEL_FILE) if os.path.isdir(path) else path


def load_model(path: Union[str, os.PathLike], flag: str = "--model") -> FastModel:
    """The network trained into `path` (a model.keras file, or the --model_dir of
    `python -m tfstyle.train`), loaded offline; refuses a missing, damaged or foreign file in
    one sentence (naming `flag`). Loaded once per process while the file stays the same."""
    file = model_path(path)
    if not os.path.isfile(file):
        raise UserError(f"{flag} '{path}' is neither a model file nor a training directory "
                        f"holding {MODEL_FILE}." if not os.path.exists(file) or
                        os.path.isdir(path) else f"{flag} '{path}' is not a file.")
    key = (os.path.abspath(file), os.path.getmtime(file))
    if key not in _loaded:
        _loaded[key] = FastModel(_read(file), file)
    return _loaded[key]


def _read(file: str) -> keras.Model:
    if not zipfile.is_zipfile(file):
        raise UserError(f"'{file}' is not a Keras model file (a .keras archive).")
    try:
        network = keras.saving.load_model(file, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many kinds for a damaged or foreign archive
        first = next((line for line in str(error).splitlines() if line.strip()), "")
        raise UserError(f"'{file}' cannot be loaded as a tfstyle network "
                        f"({type(error).__name__}: {first.strip()[:150]}).") from None
    if not _is_style_network(network):
        raise UserError(f"'{file}' is a Keras model but not a tfstyle style network (it must "
                        "map images [batch, H, W, 3] to images of the same shape).")
    return network


def _is_style_network(network: Any) -> bool:
    """Images [batch, H, W, 3] (and style weights, if conditional) to images of that shape."""
    try:
        inputs, outputs = list(network.inputs), list(network.outputs)
    except (AttributeError, ValueError, TypeError):  # never built, or not a Keras model
        return False
    if not isinstance(network, keras.Model) or len(outputs) != 1 or len(inputs) not in (1, 2):
        return False
    image = tuple(inputs[0].shape)  # an image, or a texture network's noise (3 per level)
    channels = 3 * (networks.texture_levels(network) or 1)
    return ((len(image) == 4 and image[-1] == channels or adain.is_decoder(network))
            and tuple(outputs[0].shape[1:]) == (None, None, 3))
