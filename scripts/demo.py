"""Stylise the bundled Tübingen photo in the style of The Starry Night, end to end.

    python scripts/demo.py [--output_dir=demo-output] [any tfstyle.run flag]

Writes the result and a side-by-side picture (content | style | result) to the output
directory. It runs the default preset, so it also shows what the defaults give.
"""
import os
import sys

from absl import app, flags, logging
from PIL import Image

from tfstyle import api, images
from tfstyle import run as tfstyle_run  # defines the tfstyle flags
from tfstyle.errors import UserError

flags.DEFINE_string("output_dir", "demo-output", "Where to write the demo pictures.")
FLAGS = flags.FLAGS


def side_by_side(pictures: list[Image.Image], height: int = 256, gap: int = 8) -> Image.Image:
    scaled = [p.resize((round(p.width * height / p.height), height), Image.BICUBIC) for p in pictures]
    canvas = Image.new("RGB", (sum(p.width for p in scaled) + gap * (len(scaled) - 1), height), "white")
    x = 0
    for picture in scaled:
        canvas.paste(picture, (x, 0))
        x += picture.width + gap
    return canvas


def main(argv):
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    samples = dict(content="sample:tubingen", style="sample:starry_night",
                   output=os.path.join(FLAGS.output_dir, "tubingen_starry_night.png"))
    try:
        config = tfstyle_run.config_from_flags()
        config = config.replace(**{name: value for name, value in samples.items()
                                   if not getattr(config, name)})
        result = api.run_config(config)
    except UserError as error:
        print(f"demo: error: {error}", file=sys.stderr)
        return 2
    pictures = [images.load_image(config.content), images.load_image(config.style),
                images.load_image(config.output)]
    comparison = os.path.join(FLAGS.output_dir, "side_by_side.png")
    side_by_side(pictures).save(comparison)
    logging.info("%d steps in %.0f s; wrote %s and %s", result.steps, result.seconds,
                 config.output, comparison)
    print(f"Result: {config.output}\nContent | style | result: {comparison}")
    return 0


if __name__ == "__main__":
    app.run(main)
