"""What each style control does: one contact sheet per control, on the sample images.

    python scripts/gallery.py [--max_size=256] [--max_steps=500] [--output_dir=gallery-output]
                              [--sheets=blend,scale,...,texture]

Stylises tubingen once per setting (or synthesises a texture), in this process (VGG19
loaded once), and writes SHEET.jpg to the output directory for each sheet, each picture
labelled with its flags and its time:

- blend: starry_night and the_scream mixed 1:0, 3:1, 1:1, 1:3, 0:1 (--style_weights)
- scale: --style_scale 0.75, 1, 2
- colours: the style's colours, --preserve_colors=luminance, --preserve_colors=histogram
- pooling: --pooling=max, --pooling=avg
- init: --init=content, noise, style
- layers: --content_layers block4_conv2 or block2_conv2, --style_layer_weight_exp 0.5 or 2
- presets: default, coursera, gatys2016, jcjohnson, tf_tutorial (at most --max_steps steps)
- regions: the_scream's sky above starry_night's town, two soft masks (--style_masks)
- texture: no content; starry_night coarse to fine, and starry_night and the_scream on one
  scale without block5_conv1

Sizes other than 512 px change what the size-dependent weights of gatys2016 (α) and jcjohnson
(the TV weight) must be; the sheet rescales them as README "Presets from other tools" says.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import tfstyle
from tfstyle import api, images
from tfstyle.errors import UserError
from tfstyle.features import layer_shape

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT.parent / "shared" / "images"
sys.path.insert(0, str(ROOT / "scripts"))
from quality import font  # noqa: E402  (the same labels as the quality sheet)

SHEETS = ("blend", "scale", "colours", "pooling", "init", "layers", "presets", "regions", "texture")


def cells(sheet: str, pictures: Path, masks: tuple[str, str]) -> list[tuple[str, str, dict]]:
    """(label, preset, settings) of each picture of `sheet`."""
    starry, scream = str(pictures / "starry_night.jpg"), str(pictures / "the_scream.jpg")
    if sheet == "blend":
        return [(f"--style_weights={a:g},{1 - a:g}", "default",
                 dict(style=f"{starry},{scream}", style_weights=(a, 1 - a)))
                for a in (1.0, 0.75, 0.5, 0.25, 0.0)]
    if sheet == "scale":
        return [(f"--style_scale={scale:g}", "default", dict(style=starry, style_scale=scale))
                for scale in (0.75, 1.0, 2.0)]
    if sheet == "colours":
        return [("style's colours", "default", dict(style=starry))] + [
            (f"--preserve_colors={how}", "default", dict(style=starry, preserve_colors=how))
            for how in ("luminance", "histogram")]
    if sheet == "pooling":
        return [(f"--pooling={how}", "default", dict(style=starry, pooling=how))
                for how in ("max", "avg")]
    if sheet == "init":
        return [(f"--init={how}", "default", dict(style=starry, init=how))
                for how in ("content", "noise", "style")]
    if sheet == "layers":
        return [("--content_layers=block4_conv2", "default", dict(style=starry)),
                ("--content_layers=block2_conv2", "default",
                 dict(style=starry, content_layers="block2_conv2")),
                ("--style_layer_weight_exp=0.5", "default", dict(style=starry, style_layer_weight_exp=0.5)),
                ("--style_layer_weight_exp=2", "default", dict(style=starry, style_layer_weight_exp=2.0))]
    if sheet == "presets":
        return [(f"--preset={name}", name, dict(style=starry))
                for name in ("default", "coursera", "gatys2016", "jcjohnson", "tf_tutorial")]
    if sheet == "regions":
        return [("masks", "default", dict(style=f"{scream},{starry}", style_masks=",".join(masks)))]
    if sheet == "texture":
        # Coarse to fine and block5_conv1's few positions pin down the painting's layout; one
        # scale without block5_conv1 rearranges it, as Gatys et al. 2015's textures do.
        rearranged = dict(content="", scales=1, scale_steps=(), steps=400,
                          style_layers="block1_conv1,block2_conv1,block3_conv1,block4_conv1")
        return [("no --content: the layout comes back", "default", dict(content="", style=starry)),
                ("--scales=1, no block5_conv1", "default", dict(rearranged, style=starry)),
                ("--scales=1, no block5_conv1", "default", dict(rearranged, style=scream))]
    raise ValueError(sheet)


def sized(preset: str, settings: dict, max_size: int, max_steps: int, content: Path) -> tfstyle.Config:
    """The cell's config at `max_size`, with the size-dependent weights of the presets that
    have them rescaled from 512x512 and at most `max_steps` steps at each size."""
    settings = {"content": str(content), **settings}
    width, height = images.fit_size(Image.open(content).size, max_size)
    if preset == "gatys2016":  # α = 10⁻³·2·N·M at conv4_2
        settings["alpha"] = 1e-3 * 2 * np.prod(layer_shape("block4_conv2", height, width))
    if preset == "jcjohnson":  # TV weight = 10⁻³·½·256²·H·W
        settings["tv_weight"] = 1e-3 * 256 ** 2 / 2 * height * width
    config = tfstyle.make_config(preset, image_size=0, max_size=max_size, quiet=True,
                                 overwrite=True, **settings)
    capped = [min(steps, max_steps) for steps in config.steps_per_scale]
    return config.replace(scale_steps=tuple(capped[:-1]), steps=capped[-1])


def region_masks(content: Path, directory: Path) -> tuple[str, str]:
    """A sky mask (white above the skyline, a soft band between) and its complement."""
    width, height = Image.open(content).size
    rows = np.linspace(0.0, 1.0, height)[:, None] * np.ones((1, width))
    sky = np.clip((0.45 - rows) / 0.1 + 0.5, 0.0, 1.0)
    paths = []
    for name, mask in (("sky", sky), ("town", 1.0 - sky)):
        path = directory / f"mask_{name}.png"
        Image.fromarray(np.uint8(np.round(mask * 255)), "L").save(path)
        paths.append(str(path))
    return paths[0], paths[1]


def contact_sheet(pictures: list[tuple[str, Path]], path: Path, height: int = 200, gap: int = 6):
    """The pictures in a row at one height, each with its label under it."""
    face = font(12)
    label_height = 32
    opened = [Image.open(picture).convert("RGB") for _, picture in pictures]
    scaled = [p.resize((round(p.width * height / p.height), height), Image.LANCZOS) for p in opened]
    sheet = Image.new("RGB", (sum(p.width for p in scaled) + gap * (len(scaled) - 1),
                              height + label_height), "white")
    draw = ImageDraw.Draw(sheet)
    x = 0
    for (label, _), picture in zip(pictures, scaled):
        sheet.paste(picture, (x, 0))
        draw.text((x + 3, height + 2), label, fill="black", font=face)
        x += picture.width + gap
    sheet.save(path, quality=90)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max_size", type=int, default=256)
    parser.add_argument("--max_steps", type=int, default=500,
                        help="at most this many steps at each size (some presets have more)")
    parser.add_argument("--output_dir", default="gallery-output")
    parser.add_argument("--sheets", default=",".join(SHEETS), help="from: " + ", ".join(SHEETS))
    parser.add_argument("--images", default=str(SAMPLES),
                        help="folder with tubingen.jpg, starry_night.jpg and the_scream.jpg")
    parser.add_argument("--json", default="", help="also write each picture's settings and time")
    options = parser.parse_args()
    pictures, out = Path(options.images), Path(options.output_dir)
    unknown = sorted(set(options.sheets.split(",")) - set(SHEETS))
    if unknown:
        parser.error(f"unknown sheet(s) {', '.join(unknown)}; choose from {', '.join(SHEETS)}")
    out.mkdir(parents=True, exist_ok=True)
    content = pictures / "tubingen.jpg"
    masks = region_masks(content, out)
    rows = []
    for sheet in options.sheets.split(","):
        made = []
        for number, (label, preset, settings) in enumerate(cells(sheet, pictures, masks)):
            output = out / f"{sheet}_{number}.png"
            try:
                config = sized(preset, settings, options.max_size, options.max_steps, content)
                start = time.perf_counter()
                result = api.run_config(config.replace(output=str(output)))
            except UserError as error:
                print(f"gallery: error: {label}: {error}", file=sys.stderr)
                return 2
            seconds = time.perf_counter() - start
            size = Image.open(output).size
            made.append((f"{label}\n{size[0]}x{size[1]}, {result.steps} steps, {seconds:.0f} s",
                         output))
            rows.append(dict(sheet=sheet, label=label, preset=preset, output=str(output),
                             steps=result.steps, seconds=seconds))
            print(f"{sheet:8} {label:34} {result.steps:5d} steps {seconds:6.1f} s", flush=True)
        contact_sheet(made, out / f"{sheet}.jpg")
        print(f"{sheet}: {out / f'{sheet}.jpg'}", flush=True)
    if options.json:
        Path(options.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
