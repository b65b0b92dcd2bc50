"""How fast and how good are the trained networks, against the plain Gatys command?

    python scripts/fast_benchmark.py [--models=sample:johnson_starry_night,DIR,...]
        [--photos=p1.jpg,p2.jpg,...] [--styles=sample:starry_night,...] [--sizes=256,512,1024]
        [--gatys | --gatys_from=REPORT.json] [--max_size=512] [--flags="..."]
        [--output_dir=fast-output]

For each model: images per second at each size (the longest side; the first photo resized
to it, after two warm-up passes, start-up excluded) and the process's peak memory; then each
photo (default: the model's held-out photos, which it never saw in training) through it at
--max_size, scored by the neutral scorer (../shared/tools/style_score.py: style error, content
error, lower is better) against the style: the one it was trained on, each of a conditional
network's in turn, or for an AdaIN network each of --styles (paintings it never saw). With
--gatys, the plain command `python -m tfstyle.run --content=PHOTO --style=STYLE --output=OUT
--max_size=512` (and --flags) is run on the same photo and style (once for all the models),
timed and scored beside it, and a sheet (photo | Gatys | network) is written per model and
style.
"""
from __future__ import annotations

import argparse
import json
import resource
import shlex
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw

from quality import SHARED, font, score, stylise  # the same scorer and command as quality.py
from tfstyle import fast, images, schedule
from tfstyle.config import make_config
from tfstyle.style import Style

ROW_HEIGHT = 200


def painter(model: fast.FastModel, style: str, number: int):
    """What paints a batch [1, H, W, 3] in the model's style `number` (an AdaIN network: in
    the image `style`, sized as the run would size it)."""
    if model.arbitrary:
        picture = images.load_image(style)

        def paint(batch):
            size = schedule.style_size_at(make_config(), picture.size, batch.shape[2:0:-1])
            return model.paint(batch, [Style(images.to_array(picture, size)[None])])
        return paint
    weights = [float(k == number) for k in range(model.styles)] if model.styles > 1 else None
    return lambda batch: model.stylise(batch, weights)


def speed(paint, photo: str, side: int, repeats: int = 5) -> float:
    """Images per second at `side` pixels on the longest side, after two warm-up passes."""
    picture = images.load_image(photo)
    batch = images.to_array(picture, images.fit_size(picture.size, side))[None]
    for _ in range(2):
        paint(batch)
    start = time.perf_counter()
    for _ in range(repeats):
        paint(batch)
    return repeats / (time.perf_counter() - start)


def style_path(name: str) -> str:
    return images.sample_path(name.removeprefix("sample:")) if name.startswith("sample:") else name


def peak_memory_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sheet(rows: list[dict], path: Path) -> None:
    """One row per photo: the photo | Gatys | the network, with their scores."""
    face = font(13)
    columns = [("photo", "photo"), ("gatys", "Gatys"), ("fast", "network")]
    pictures = [[Image.open(row[key]).convert("RGB") for key, _ in columns] for row in rows]
    scaled = [[p.resize((round(p.width * ROW_HEIGHT / p.height), ROW_HEIGHT), Image.LANCZOS)
               for p in row] for row in pictures]
    width = max(sum(p.width + 6 for p in row) for row in scaled)
    canvas = Image.new("RGB", (width, len(rows) * (ROW_HEIGHT + 40)), "white")
    draw = ImageDraw.Draw(canvas)
    for index, (row, shown) in enumerate(zip(rows, scaled)):
        y, x = index * (ROW_HEIGHT + 40), 0
        for (key, label), picture in zip(columns, shown):
            canvas.paste(picture, (x, y))
            text = label if key == "photo" else (
                f"{label}, {row[key + '_seconds']:.2f} s\nstyle {row[key + '_style_error']:.3f}, "
                f"content {row[key + '_content_error']:.3f}")
            draw.text((x + 4, y + ROW_HEIGHT + 2), text, fill="black", font=face)
            x += picture.width + 6
    canvas.save(path)


def run_key(photo: str, style: str) -> tuple[str, str]:
    """Which Gatys run a row needs: its photo and style, as resolved paths."""
    return str(Path(photo).resolve()), str(Path(style).resolve())


def earlier_gatys_runs(options: argparse.Namespace) -> dict[tuple[str, str], tuple[Path, float]]:
    """The Gatys pictures and wall times of the report --gatys_from, by run_key; refused when
    they were made with other --max_size or --flags, or a picture is gone."""
    try:
        rows = json.loads(Path(options.gatys_from).read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(f"Cannot read the report --gatys_from={options.gatys_from} ({error}).")
    runs = {}
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict) or "gatys" not in row:
            continue
        # Reports from before these were recorded ran the plain command's defaults.
        made = (row.get("gatys_max_size", 512), row.get("gatys_flags", ""))
        if made != (options.max_size, options.flags):
            raise SystemExit(f"{options.gatys_from} has Gatys runs made with --max_size="
                             f"{made[0]} --flags={made[1]!r}; give the same ones.")
        if not Path(row["gatys"]).is_file():
            raise SystemExit(f"The Gatys picture {row['gatys']} of {options.gatys_from} is gone.")
        runs[run_key(row["photo"], row["style"])] = Path(row["gatys"]), row["gatys_seconds"]
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(f"sample:{name}"
                                                     for name in fast.sample_models()))
    parser.add_argument("--photos", default="", help="comma-separated (default: held out)")
    parser.add_argument("--styles", default="sample:starry_night",
                        help="comma-separated: the styles an AdaIN network is scored in")
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--gatys", action="store_true")
    parser.add_argument("--gatys_from", default="", help="an earlier fast_benchmark.json")
    parser.add_argument("--max_size", type=int, default=512)
    parser.add_argument("--flags", default="", help="more flags for the Gatys command")
    parser.add_argument("--output_dir", default="fast-output")
    parser.add_argument("--scorer", default=str(SHARED / "tools" / "style_score.py"))
    options = parser.parse_args()
    out = Path(options.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = []
    gatys_runs = earlier_gatys_runs(options) if options.gatys_from else {}
    options.gatys = options.gatys or bool(options.gatys_from)
    for index, name in enumerate(options.models.split(",")):
        model = fast.load_model(name)
        settings = model.settings
        styles = (options.styles if model.arbitrary else settings.get("style", "")).split(",")
        photos = (options.photos.split(",") if options.photos else
                  settings.get("held_out_photos", []))
        if not photos or not all(styles):
            raise SystemExit(f"{name} has no training record (model.json) naming its style "
                             "and held-out photos: give --photos (and --styles).")
        label = f"{index}_{Path(name.removeprefix('sample:')).stem}"
        print(f"{name}: trained on {settings.get('content_dir')} in the style(s) "
              f"{settings.get('style')}, {settings.get('steps_done')} steps", flush=True)
        for side in map(int, options.sizes.split(",")):
            rate = speed(painter(model, style_path(styles[0]), 0), photos[0], side)
            print(f"  {side:5d} px: {rate:6.2f} images/s ({1 / rate:.3f} s an image), "
                  f"peak memory {peak_memory_mib():.0f} MiB", flush=True)
            report.append(dict(model=name, side=side, images_per_second=rate,
                               peak_mib=peak_memory_mib()))
        for number, style in enumerate(map(style_path, styles)):
            paint, style_label = painter(model, style, number), Path(style).stem
            print(f"  in the style {style}:", flush=True)
            rows = []
            for photo in photos:
                stem = Path(photo).stem
                fast_output = out / f"{label}_{style_label}_{stem}_fast.png"
                start = time.perf_counter()
                picture = images.load_image(photo)
                batch = images.to_array(picture, images.fit_size(picture.size,
                                                                 options.max_size))[None]
                images.to_pil(paint(batch)[0]).save(fast_output)
                row = dict(model=name, style=style, photo=photo, fast=str(fast_output),
                           fast_seconds=time.perf_counter() - start)
                outputs = [fast_output]
                if options.gatys:
                    key = run_key(photo, style)
                    if options.gatys_from and key not in gatys_runs:
                        raise SystemExit(f"{options.gatys_from} has no Gatys run of {photo} in "
                                         f"the style {style}: run with --gatys instead.")
                    if key not in gatys_runs:
                        gatys_output = out / f"gatys{len(gatys_runs)}_{style_label}_{stem}.png"
                        gatys_runs[key] = gatys_output, stylise(
                            Path(photo), Path(style), gatys_output, options.max_size,
                            shlex.split(options.flags))
                    gatys_output, row["gatys_seconds"] = gatys_runs[key]
                    row.update(gatys=str(gatys_output), gatys_max_size=options.max_size,
                               gatys_flags=options.flags)
                    outputs.append(gatys_output)
                scores = score(Path(options.scorer), Path(photo), Path(style), *outputs)
                for key, (style_error, content_error) in zip(("fast", "gatys"), scores):
                    row[f"{key}_style_error"] = style_error
                    row[f"{key}_content_error"] = content_error
                line = (f"    {stem}: network style {row['fast_style_error']:.4f} content "
                        f"{row['fast_content_error']:.4f}")
                if options.gatys:
                    line += (f"; Gatys style {row['gatys_style_error']:.4f} content "
                             f"{row['gatys_content_error']:.4f} in {row['gatys_seconds']:.0f} s; "
                             f"ratios {row['fast_style_error'] / row['gatys_style_error']:.2f}, "
                             f"{row['fast_content_error'] / row['gatys_content_error']:.2f}")
                print(line, flush=True)
                rows.append(row)
            report.extend(rows)
            if options.gatys:
                sheet_path = out / f"{label}_{style_label}_sheet.png"
                sheet(rows, sheet_path)
                print(f"    photo | Gatys | network: {sheet_path}")
    (out / "fast_benchmark.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
