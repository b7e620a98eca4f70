"""Colour 2D images through the CLI: the endoscopy polyps of ``--data/kvasir_seg``.

    python benchmarks/colour_2d.py [--data ../shared/data] [--backend litemedsam]

Each JPEG goes through the command line (``inference.cli.main``, in this process so that the
model loads once) as the colour image it is, with the box of its reference mask's largest
component (masks are JPEG: foreground > 127); the written PNG mask is scored against the
reference with Dice. The same run scores two references: the ellipse inscribed in the box, and
the classical backend (which takes the image's luma). Ends with
``RESULT colour_2d mean_dice=... ellipse_dice=... classical_dice=... images=N``.
"""

import argparse
import contextlib
import io
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.cli import main as cli_main
from inference.engine import dice
from inference.evaluation import DEFAULT_DATA


def reference(path: Path) -> np.ndarray:
    grey = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    if grey.ndim == 3:
        grey = grey.mean(axis=2)
    mask = grey > 127
    labels, count = ndimage.label(mask)
    if count > 1:
        sizes = ndimage.sum(mask, labels, range(1, count + 1))
        mask = labels == 1 + int(np.argmax(sizes))
    return mask


def ellipse(box: tuple[int, int, int, int], shape: tuple[int, ...]) -> np.ndarray:
    x0, y0, x1, y1 = box
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0 + 1) / 2, (y1 - y0 + 1) / 2
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1


def run_cli(image: Path, box: tuple[int, int, int, int], out: Path, backend: str) -> dict:
    argv = ["segment", "--image", str(image), "--slice", "0", "--out", str(out)]
    argv += ["--backend", backend, "--box", *map(str, box)]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = cli_main(argv)
    if status != 0:
        raise SystemExit(f"the CLI failed on {image.name} (status {status})")
    return json.loads(stdout.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--backend", default="litemedsam")
    args = parser.parse_args()
    folder = args.data / "kvasir_seg"
    images = sorted((folder / "images").glob("*.jpg"))
    if not images:
        sys.exit(f"no images in {folder / 'images'}")
    started = time.perf_counter()
    scores: dict[str, list[float]] = {"model": [], "ellipse": [], "classical": []}
    seconds: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for image in images:
            ref = reference(folder / "masks" / image.name)
            rows, cols = np.nonzero(ref)
            box = (int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max()))
            out = Path(tmp) / f"{image.stem}.png"
            t0 = time.perf_counter()
            summary = run_cli(image, box, out, args.backend)
            seconds.append(time.perf_counter() - t0)
            if not summary.get("colour"):
                sys.exit(f"{image.name} did not go to the backend in colour: {summary}")
            mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out))) > 0
            scores["model"].append(dice(mask, ref))
            scores["ellipse"].append(dice(ellipse(box, ref.shape), ref))
            run_cli(image, box, out, "inference.engine.classical.ClassicalBackend")
            classical = sitk.GetArrayFromImage(sitk.ReadImage(str(out))) > 0
            scores["classical"].append(dice(classical, ref))
            print(
                f"{image.stem:28s} {ref.shape[1]}x{ref.shape[0]} dice={scores['model'][-1]:.3f} "
                f"ellipse={scores['ellipse'][-1]:.3f} classical={scores['classical'][-1]:.3f} "
                f"{seconds[-1]:.1f} s",
                flush=True,
            )
    means = {name: statistics.mean(values) for name, values in scores.items()}
    print(
        f"machine: {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}; median {statistics.median(seconds):.1f} s an image; "
        f"total {time.perf_counter() - started:.0f} s"
    )
    print(
        f"RESULT colour_2d mean_dice={means['model']:.3f} ellipse_dice={means['ellipse']:.3f} "
        f"classical_dice={means['classical']:.3f} images={len(images)} backend={args.backend}"
    )


if __name__ == "__main__":
    main()
