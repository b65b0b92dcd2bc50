"""How much does a stylised clip flicker, with and without the temporal cost?

    python scripts/flicker.py [--frames=24] [--size=128] [--out=flicker] [--strip=strip.png]

Makes the sample clip (a pan over the bundled Tübingen photo, --frames frames of --size
pixels wide, written to OUT/pan.mp4), stylises it in the bundled Starry Night with the
default settings (two scales: three would start below VGG19's 32 pixels): each frame on its
own, as a picture (the baseline: no flow at all), then as a clip with --temporal_weight=0
(each frame still starts from the previous one warped along the flow) and with the default
temporal weight (or --temporal_weights), and prints for each the flicker: the mean absolute difference, in 0-255 levels, between each stylised frame and the one
before it warped along the optical flow, over the pixels the flow can follow
(video.flicker). The last lines are the ratios of the last to the first two (lower is
better). --strip writes four frames of each run, one run per row.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tfstyle import images, video
from tfstyle.config import make_config


def stylised(folder: Path, numbers: list[int]) -> list[np.ndarray]:
    return [np.asarray(Image.open(video.frame_path(str(folder), number)).convert("RGB"))
            for number in numbers]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--out", default="flicker")
    parser.add_argument("--strip", default="")
    parser.add_argument("--frame_steps", type=int, default=100)
    parser.add_argument("--temporal_weights", default="",
                        help="comma-separated weights to compare (default: 0 and the default)")
    options = parser.parse_args()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    size = (options.size, options.size * 3 // 4)
    frames = video.pan(images.load_image("sample:tubingen"), options.frames, size)
    clip = out / "pan.mp4"
    video.encode(str(clip), iter(frames), size, 12.0)
    base = make_config(content=str(clip), style="sample:starry_night", max_size=options.size,
                       frame_steps=options.frame_steps, quiet=True, overwrite=True,
                       scales=2, scale_steps=(300,))
    clip_frames = video.read_clip(base)
    flows = video.clip_flows("", clip_frames, video.shots(clip_frames.frames))
    rows, figures = [], {}
    start = time.perf_counter()
    pictures = [outcome.picture for number, frame in zip(clip_frames.numbers, clip_frames.frames)
                for outcome in video.stylise_shot(base, video.ShotWork([number], [frame]))]
    report("each frame alone", pictures, flows, time.perf_counter() - start, figures, rows)
    weights = ([float(item) for item in options.temporal_weights.split(",")]
               if options.temporal_weights else [0.0, base.temporal_weight])
    for weight in weights:
        folder = out / f"temporal_{weight:g}"
        summary = video.run_video(base.replace(output=str(folder), temporal_weight=weight))
        report(f"temporal_weight {weight:g}", stylised(folder, clip_frames.numbers), flows,
               summary.seconds, figures, rows)
    if options.strip:
        shown = np.linspace(0, options.frames - 1, 4).round().astype(int)
        width, height = size
        sheet = Image.new("RGB", (4 * width, (1 + len(rows)) * height), "white")
        for column, position in enumerate(shown):
            sheet.paste(Image.fromarray(frames[position]), (column * width, 0))
            for row, pictures in enumerate(rows, 1):
                sheet.paste(Image.fromarray(pictures[position]), (column * width, row * height))
        sheet.save(options.strip)
    (out / "flicker.json").write_text(json.dumps(figures))
    names = list(figures)
    for baseline in names[:2]:
        print(f"flicker with {names[-1]} / {baseline}: "
              f"{figures[names[-1]] / figures[baseline]:.3f}")
    return 0


def report(name: str, pictures: list[np.ndarray], flows: list, seconds: float,
           figures: dict[str, float], rows: list[list[np.ndarray]]) -> None:
    figures[name] = 255 * video.flicker(pictures, flows)
    rows.append(pictures)
    print(f"{name:<22} flicker {figures[name]:6.2f} levels "
          f"({seconds / len(pictures):.1f} s a frame)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
