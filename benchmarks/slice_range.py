"""What the lesion's slice range is worth as a prompt to the classical default backend.

    python benchmarks/slice_range.py [--data ../shared/data]

Every lesion of ``--data/pairs.json`` (as ``segmentation_accuracy.py`` loads them: each
component of >= 100 voxels, the tight box on its largest slice) is segmented twice by the
classical backend: with the box alone, and with the box and ``z_range`` = the reference's first
and last slice, the two marks an annotator makes while scrolling. Scores: 3D Dice and the
fraction of slices to re-contour (2D Dice < 0.9). Ends with ``RESULT slice_range ...``.
"""

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.engine import ClassicalBackend, dice
from inference.engine.metrics import slices_to_fix
from inference.evaluation import DEFAULT_DATA, all_lesion_cases, load_lesion, load_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    pairs = load_pairs(args.data)
    if pairs is None:
        sys.exit(f"no pairs.json in {args.data}")
    started = time.perf_counter()
    cases = all_lesion_cases(pairs, args.data)
    backend = ClassicalBackend()
    rows = []
    fix = {"without": [0, 0], "with": [0, 0]}
    print(f"{'lesion':44s} {'slices':>6s} {'without':>8s} {'with':>8s}")
    for case in cases:
        item = load_lesion(case, pairs, args.data)
        slices = np.flatnonzero(item.reference.any(axis=(1, 2)))
        ranged = replace(item.prompt, z_range=(int(slices[0]), int(slices[-1])))
        scores = []
        for name, prompt in (("without", item.prompt), ("with", ranged)):
            mask = backend.segment(item.volume, [prompt]).masks[prompt.lesion_id]
            if name == "with":
                z0, z1 = ranged.z_range or (0, 0)
                assert not mask[:z0].any() and not mask[z1 + 1 :].any()
            scores.append(dice(mask, item.reference))
            to_fix, counted = slices_to_fix(mask, item.reference)
            fix[name][0] += to_fix
            fix[name][1] += counted
        rows.append(scores)
        print(f"{case.name:44s} {len(slices):6d} {scores[0]:8.3f} {scores[1]:8.3f}")
    without = statistics.mean(r[0] for r in rows)
    with_range = statistics.mean(r[1] for r in rows)
    better = sum(r[1] > r[0] + 0.005 for r in rows)
    worse = sum(r[1] < r[0] - 0.005 for r in rows)
    fix_without = fix["without"][0] / max(1, fix["without"][1])
    fix_with = fix["with"][0] / max(1, fix["with"][1])
    print(
        f"mean Dice {without:.3f} without the range, {with_range:.3f} with it ({better} lesions "
        f"better, {worse} worse by more than 0.005); slices to re-contour {fix_without:.3f} -> "
        f"{fix_with:.3f}; {time.perf_counter() - started:.0f} s"
    )
    print(
        f"RESULT slice_range dice_without={without:.3f} dice_with={with_range:.3f} "
        f"fix_without={fix_without:.3f} fix_with={fix_with:.3f} cases={len(rows)}"
    )


if __name__ == "__main__":
    main()
