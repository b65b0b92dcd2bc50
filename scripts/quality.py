"""How good is the picture, and how long does it take? tfstyle against the reference Gatys tool.

    python scripts/quality.py [--max_size=512] [--output_dir=quality-output] [--json=FILE]
                              [--flags="--tv_weight=1"]

For tubingen in each of four styles, runs the plain command a user would type,

    python -m tfstyle.run --content=tubingen.jpg --style=STYLE.jpg --output=OUT --max_size=512

times it (wall clock, start-up included), scores the output and the reference tool's published
output (jcjohnson/neural-style: 1000 L-BFGS iterations at 512 px) with the neutral scorer,
../shared/tools/style_score.py (style error and content error, lower is better), prints them
side by side, and writes a picture with both for each style (ours | reference).
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
# style image -> the reference tool's output for tubingen in that style
PAIRS = {"starry_night": "tubingen_starry.png", "the_scream": "tubingen_scream.png",
         "shipwreck": "tubingen_shipwreck.png", "seated-nude": "tubingen_seated_nude.png"}
SCORE = re.compile(r"style_error (\S+) content_error (\S+)")


def score(scorer: Path, content: Path, style: Path, *outputs: Path) -> list[tuple[float, float]]:
    """(style error, content error) of each output, from the scorer's own printout."""
    process = subprocess.run([sys.executable, str(scorer), str(content), str(style),
                              *map(str, outputs)], capture_output=True, text=True, check=False)
    found = SCORE.findall(process.stdout)
    if process.returncode != 0 or len(found) != len(outputs):
        raise SystemExit(f"The scorer failed:\n{process.stdout}\n{process.stderr[-3000:]}")
    return [(float(style_error), float(content_error)) for style_error, content_error in found]


def stylise(content: Path, style: Path, output: Path, max_size: int, flags: list[str]) -> float:
    """Seconds the plain command takes, start-up included."""
    command = [sys.executable, "-m", "tfstyle.run", f"--content={content}", f"--style={style}",
               f"--output={output}", f"--max_size={max_size}", "--overwrite", "--quiet", *flags]
    start = time.perf_counter()
    process = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{process.stderr[-3000:]}")
    return seconds


def font(size: int) -> ImageFont.ImageFont:
    for name in ("DejaVuSans.ttf", "LiberationSans-Regular.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            pass
    return ImageFont.load_default()


def side_by_side(rows: list[dict], path: Path, height: int = 240, gap: int = 6) -> None:
    """One row per style: ours | the reference, each with its scores under it."""
    face = font(13)
    label_height = 36
    pictures = [[Image.open(row["output"]).convert("RGB"), Image.open(row["reference"]).convert("RGB")]
                for row in rows]
    scaled = [[p.resize((round(p.width * height / p.height), height), Image.LANCZOS) for p in pair]
              for pair in pictures]
    width = max(sum(p.width for p in pair) + gap for pair in scaled)
    sheet = Image.new("RGB", (width, len(rows) * (height + label_height + gap)), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (row, pair) in enumerate(zip(rows, scaled)):
        y = index * (height + label_height + gap)
        x = 0
        for who, picture in zip(("tfstyle", "reference"), pair):
            sheet.paste(picture, (x, y))
            how = (f"tfstyle, {row['seconds']:.0f} s" if who == "tfstyle"
                   else "reference, 1000 L-BFGS iterations")
            draw.text((x + 4, y + height + 2),
                      f"{how}\n{row['style']}: style {row[f'{who}_style_error']:.3f}, "
                      f"content {row[f'{who}_content_error']:.3f}", fill="black", font=face)
            x += picture.width + gap
    sheet.save(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max_size", type=int, default=512)
    parser.add_argument("--output_dir", default="quality-output")
    parser.add_argument("--styles", default=",".join(PAIRS),
                        help="comma-separated, from: " + ", ".join(PAIRS))
    parser.add_argument("--flags", default="", help="more tfstyle.run flags, e.g. '--beta=5'")
    parser.add_argument("--images", default=str(SHARED / "images"),
                        help="folder with tubingen.jpg and the style images")
    parser.add_argument("--reference", default=str(SHARED / "reference"),
                        help="folder with the reference tool's outputs")
    parser.add_argument("--scorer", default=str(SHARED / "tools" / "style_score.py"))
    parser.add_argument("--json", default="", help="also write the figures to this file")
    options = parser.parse_args()
    images, reference = Path(options.images), Path(options.reference)
    out = Path(options.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    flags = shlex.split(options.flags)
    content = images / "tubingen.jpg"
    rows = []
    for style_name in options.styles.split(","):
        style = images / f"{style_name}.jpg"
        output = out / f"tubingen_{style_name}.png"
        seconds = stylise(content, style, output, options.max_size, flags)
        ours, theirs = score(Path(options.scorer), content, style, output,
                             reference / PAIRS[style_name])
        row = dict(style=style_name, seconds=seconds, output=str(output),
                   reference=str(reference / PAIRS[style_name]),
                   tfstyle_style_error=ours[0], tfstyle_content_error=ours[1],
                   reference_style_error=theirs[0], reference_content_error=theirs[1])
        row["better_on_both"] = ours[0] <= theirs[0] and ours[1] <= theirs[1]
        rows.append(row)
        print(f"{style_name}: {seconds:.0f} s, style {ours[0]:.4f} (reference {theirs[0]:.4f}), "
              f"content {ours[1]:.4f} (reference {theirs[1]:.4f})", flush=True)
    picture = out / "side_by_side.png"
    side_by_side(rows, picture)
    command = "python -m tfstyle.run --max_size=" + str(options.max_size) + (
        f" {options.flags}" if options.flags else "")
    print(f"\n{command}, tubingen in each style; scored by {options.scorer}")
    print(f"{'style':14} {'time':>6}  {'style error':>23}  {'content error':>23}  better on both")
    print(f"{'':14} {'':>6}  {'tfstyle':>11} {'reference':>11}  {'tfstyle':>11} {'reference':>11}")
    for row in rows:
        print(f"{row['style']:14} {row['seconds']:5.0f}s  {row['tfstyle_style_error']:11.4f} "
              f"{row['reference_style_error']:11.4f}  {row['tfstyle_content_error']:11.4f} "
              f"{row['reference_content_error']:11.4f}  {'yes' if row['better_on_both'] else 'NO'}")
    print(f"ours | reference: {picture}")
    if options.json:
        Path(options.json).write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
