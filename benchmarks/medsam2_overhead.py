"""MedSAM2 through the Celery worker path against the bare reference recipe, in the same run.

    python benchmarks/medsam2_overhead.py [--device cpu|cuda] [--slices 64] [--size 512]
                                          [--big-slices 256] [--checkpoint FILE]
                                          [--clicks-only | --peak-only]

Random weights (saved in the official ``{"model": state_dict}`` format and loaded through the
real loading code) unless ``--checkpoint`` names a MedSAM2 file: the masks mean nothing, the
timings are real. A fresh SQLite database and data folder; a CT phantom of ``--slices`` slices of
``--size`` px is imported into a project as a user would import it.

1. Lesion 1, box on its key slice, propagated through the whole volume both ways: through the
   worker path (``segmentation_enqueue`` -> the Celery task ``run_segmentation_job``, run eagerly
   in this process as a solo worker runs it: reads the volume from storage, the worker's backend,
   saves a mask version), and through the bare reference recipe (sam2's own video predictor,
   ``tests/support/medsam2_reference.py``, the same recipe the engine's tests compare against).
   Both models are loaded and warmed up on a 2-slice volume first; loading is not timed.
   ``ratio`` = worker seconds / reference seconds.
2. Lesion 2 (another box) on the same volume through the worker path: a full propagation again,
   with the slices' image embeddings cached. ``second_lesion_speedup`` = lesion 1 seconds /
   lesion 2 seconds, both through the worker path.
3. A click on one slice (``z_range`` = that slice) against the worker's warm backend: the median
   of 5, in ms (``slice_prompt_ms``). The job API takes boxes only, so this is the engine call a
   click would cost inside the worker, not a job. ``--clicks-only`` runs this part alone.
4. A worker-path job on a ``--big-slices`` volume in a fresh process with the embedding cache on
   (``MEDSAM2_CACHE_MB``, default 384): its peak resident memory (``peak_rss_mb``, VmHWM,
   in MiB). ``--peak-only`` runs this part alone.

Prints the per-slice times too (the GPU figure: ``--device cuda``). Ends with
``RESULT medsam2_overhead ratio=X second_lesion_speedup=Y slice_prompt_ms=P
peak_rss_mb=Z``. Targets: ratio <= 1.10, second_lesion_speedup >= 1.7, slice_prompt_ms <= 200,
peak_rss_mb <= 2000 (256 slices of 512 px).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BACKEND = "inference.engine.medsam2.MedSAM2Backend"


def configure(data_dir: Path, checkpoint: Path, device: str) -> None:
    """The environment of a worker on its own database and files, then Django."""
    os.environ.update(
        {
            "ANNOTATOR_DATA_DIR": str(data_dir),
            "DATABASE_URL": f"sqlite:///{data_dir / 'db.sqlite3'}",
            "DJANGO_SETTINGS_MODULE": "annotator.settings",
            "CELERY_TASK_ALWAYS_EAGER": "true",
            "INFERENCE_BACKEND": BACKEND,
            "MEDSAM2_CHECKPOINT": str(checkpoint),
            "MEDSAM2_DEVICE": device,
        }
    )
    os.environ.pop("ANNOTATOR_MEDIA_ROOT", None)
    import django

    django.setup()


def import_lesions(slug: str, depth: int, size: int, seed: int, count: int) -> list[int]:
    """A CT phantom imported into a new project, its task claimed, ``count`` box-prompted
    lesions (the phantom's own, else shifted copies of the first); returns their ids."""
    from django.contrib.auth.models import Permission, User

    from annotator.annotation.services import lesion_create
    from inference.engine import key_slice_and_box, make_ct_phantom, write_phantom
    from projects.intake.image_import import volume_import
    from projects.services import project_create
    from projects.task_services import task_claim_next

    user = User.objects.filter(username="bench").first()
    if user is None:
        user = User.objects.create_user("bench", password="bench")
        user.user_permissions.add(Permission.objects.get(codename="add_project"))
        user = User.objects.get(pk=user.pk)
    project = project_create(
        user=user, name=slug, slug=slug, modality="CT", lesion_classes=[{"name": "lesion"}]
    )
    xy = 0.7 * 512 / size  # the same field of view at every size
    phantom = make_ct_phantom(seed=seed, shape=(depth, size, size), spacing=(xy, xy, 2.5))
    prompts = [key_slice_and_box(mask) for mask in phantom.lesion_masks[:count]]
    if not prompts:
        prompts = [(depth // 2, (size // 4, size // 4, size // 2, size // 2))]
    while len(prompts) < count:
        k, (x0, y0, x1, y1) = prompts[-1]
        shift = max(2, (x1 - x0) // 2)
        prompts.append((k, (x0 + shift, y0, min(size - 1, x1 + shift), y1)))
    with tempfile.TemporaryDirectory(prefix="bench-medsam2-") as tmp:
        path = Path(tmp) / "phantom.nii.gz"
        write_phantom(phantom, path)
        with open(path, "rb") as f:
            imported = volume_import(project=project, file=f, filename="phantom.nii.gz")
    task = task_claim_next(user=user, project=project)
    assert task is not None and imported.task is not None and task.pk == imported.task.pk
    return [
        lesion_create(
            task=task, user=user, lesion_class="lesion", key_slice=int(k), box=list(box)
        ).pk
        for k, box in prompts
    ]


def run_job(lesion_id: int) -> tuple[float, dict[str, Any]]:
    """The lesion's recorded prompt as a job, through the task a worker runs; its wall time
    and the job's own timings."""
    from annotator.core.queues import INTERACTIVE as INTERACTIVE_QUEUE
    from annotator.models import Lesion
    from inference.models import InferenceJob
    from inference.services import segmentation_enqueue

    lesion = Lesion.objects.get(pk=lesion_id)
    started = time.perf_counter()
    # CELERY_TASK_ALWAYS_EAGER: on commit, apply_async runs run_segmentation_job right here.
    job = segmentation_enqueue(lesion=lesion, user=None, queue=INTERACTIVE_QUEUE)
    seconds = time.perf_counter() - started
    job.refresh_from_db()
    if job.state != InferenceJob.State.SUCCEEDED:
        raise SystemExit(f"job {job.pk} {job.state}: {job.error}")
    return seconds, dict(job.timings)


def lesion_inputs(lesion_id: int) -> tuple[Any, int, tuple[int, int, int, int], Any]:
    """What the worker reads for a lesion: the engine volume, key slice, box, and the lesion."""
    import SimpleITK as sitk

    from annotator.imaging.volumes import volume_read
    from annotator.models import Lesion
    from inference.engine import ImageVolume

    lesion = Lesion.objects.select_related("task__series__volume").get(pk=lesion_id)
    image = volume_read(lesion.task.series.volume)
    preset = lesion.task.round.project.window_presets[0]  # the window the worker uses
    volume = ImageVolume(
        array=sitk.GetArrayFromImage(image),
        spacing=tuple(image.GetSpacing()),
        modality=lesion.task.series.modality,
        window=(float(preset["center"]), float(preset["width"])),
    )
    assert lesion.key_slice is not None and lesion.box is not None
    return volume, int(lesion.key_slice), tuple(lesion.box), lesion  # type: ignore[return-value]


def warm_up(backend: Any, reference: Any, size: int, bf16: bool) -> None:
    """One tiny lesion through each model: first-call costs are not what is compared."""
    from inference.engine import ImageVolume, LesionPrompt
    from tests.support.medsam2_reference import reference_masks

    image = np.full((2, size, size), 40, dtype=np.int16)
    image[:, : size // 8] = -1000
    image[:, -size // 8 :] = 1000
    box = (size // 4, size // 4, size // 2, size // 2)
    backend.segment(ImageVolume(image, modality="CT"), [LesionPrompt("w", 1, box)])
    backend.clear_cache()
    reference_masks(reference, image, 1, box, bf16=bf16)


def peak_rss_kib() -> int:
    """This process's peak resident memory: VmHWM, not ru_maxrss, which Linux carries over
    from the parent's memory through fork and exec (it read 2 GB here whatever the child did)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child_main(args: argparse.Namespace) -> None:
    """The big-volume job in a process of its own, so its peak memory is its own."""
    configure(args.data_dir, args.checkpoint, args.device)
    from django.conf import settings

    from inference.services import load_backend

    seconds, timings = run_job(args.child_lesion)
    peak_kib = peak_rss_kib()
    cache = load_backend(settings.INFERENCE_BACKEND, "").cache_info()  # type: ignore[attr-defined]
    print(
        json.dumps(
            {"seconds": seconds, "timings": timings, "peak_rss_mb": peak_kib / 1024, "cache": cache}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--big-slices", type=int, default=256)
    parser.add_argument("--checkpoint", type=Path, help="default: random weights")
    parser.add_argument("--clicks", type=int, default=5, help="single-slice prompts timed")
    parser.add_argument("--clicks-only", action="store_true", help="part 3 only")
    parser.add_argument("--peak-only", action="store_true", help="part 4 only")
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-lesion", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_lesion is not None:
        child_main(args)
        return

    with tempfile.TemporaryDirectory(prefix="bench-medsam2-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        checkpoint = args.checkpoint
        if checkpoint is None:
            from tests.support.medsam2_reference import write_random_checkpoint

            checkpoint = write_random_checkpoint(Path(tmp) / "MedSAM2_random.pt")
        configure(data_dir, checkpoint, args.device)
        if args.clicks_only:
            from django.conf import settings
            from django.core.management import call_command

            from inference.services import load_backend

            call_command("migrate", verbosity=0)
            backend = load_backend(settings.INFERENCE_BACKEND, "")
            _, second = import_lesions("bench", args.slices, args.size, seed=0, count=2)
            volume = lesion_inputs(second)[0]
            measure_clicks(backend, volume, second, 1)  # its slice's embeddings, once
            key, click_ms = measure_clicks(backend, volume, second, args.clicks)
            print(f"click on slice {key}: " + ", ".join(f"{ms:.0f}" for ms in click_ms))
            print(f"RESULT medsam2_overhead slice_prompt_ms={statistics.median(click_ms):.0f}")
            return
        if args.peak_only:
            from django.core.management import call_command

            call_command("migrate", verbosity=0)
            big = measure_peak(args, data_dir, checkpoint)
            print(
                f"{args.big_slices}x{args.size}x{args.size}: {big['seconds']:.1f} s, peak RSS "
                f"{big['peak_rss_mb']:.0f} MB, cache {big['cache']}"
            )
            print(f"RESULT medsam2_overhead peak_rss_mb={big['peak_rss_mb']:.0f}")
            return
        report(args, data_dir, checkpoint)


def measure_clicks(
    backend: Any, volume: Any, lesion_id: int, clicks: int
) -> tuple[int, list[float]]:
    """Part 3: a click on the lesion's key slice, inside its box, on the worker's warm
    backend, confined to that slice; its key slice and each click's ms."""
    from inference.engine import LesionPrompt

    _, key, box, _ = lesion_inputs(lesion_id)
    click = ((box[0] + box[2]) // 2, (box[1] + box[3]) // 2, key)
    prompt = LesionPrompt("click", key, box, positive_points=(click,), z_range=(key, key))
    times = []
    for _ in range(clicks):
        started = time.perf_counter()
        backend.segment(volume, [prompt])
        times.append((time.perf_counter() - started) * 1000)
    return key, times


def measure_peak(args: argparse.Namespace, data_dir: Path, checkpoint: Path) -> dict[str, Any]:
    """Part 4: a ``--big-slices`` job in a fresh worker process; its peak memory and timings."""
    big_first, *_ = import_lesions("bench-big", args.big_slices, args.size, seed=1, count=1)
    child = subprocess.run(
        [
            sys.executable,
            __file__,
            "--device",
            args.device,
            "--checkpoint",
            str(checkpoint),
            "--data-dir",
            str(data_dir),
            "--child-lesion",
            str(big_first),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return result


def report(args: argparse.Namespace, data_dir: Path, checkpoint: Path) -> None:
    import torch
    from django.conf import settings
    from django.core.management import call_command

    from annotator.annotation.services import mask_version_load
    from inference.engine.medsam2.backend import largest_component
    from inference.services import load_backend
    from tests.support.medsam2_reference import reference_masks, reference_predictor

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    backend = load_backend(settings.INFERENCE_BACKEND, "")  # the worker's, loaded once
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    reference = reference_predictor(checkpoint, args.device)
    ref_load_s = time.perf_counter() - started
    bf16 = backend.precision == "bf16"  # type: ignore[attr-defined]
    warm_up(backend, reference, args.size, bf16)
    print(
        f"device {args.device} ({backend.describe()['precision']}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; model load: worker {load_s:.1f} s, "
        f"reference {ref_load_s:.1f} s"
    )

    first, second = import_lesions("bench", args.slices, args.size, seed=0, count=2)
    volume, key, box, lesion = lesion_inputs(first)
    depth = volume.shape[0]

    started = time.perf_counter()
    expected = reference_masks(reference, volume.array, key, box, volume.window, bf16=bf16)
    ref_s = time.perf_counter() - started
    del reference
    worker_s, timings = run_job(first)
    engine = timings["engine"]
    frames = int(engine["slices_propagated"])
    saved = mask_version_load(lesion.mask_versions.get())
    same = bool(np.array_equal(saved, largest_component(expected)))
    second_s, second_timings = run_job(second)
    second_engine = second_timings["engine"]

    key2, click_ms = measure_clicks(backend, volume, second, args.clicks)
    slice_prompt_ms = statistics.median(click_ms)
    del volume, expected, saved

    big = measure_peak(args, data_dir, checkpoint)
    big_engine = big["timings"]["engine"]

    ratio = worker_s / ref_s
    speedup = worker_s / second_s
    per_slice = 1000 * engine["segment"] / frames
    print(
        f"volume {depth}x{args.size}x{args.size}, lesion 1 key slice {key} box {box}: "
        f"{frames} slices propagated (forward + reverse)"
    )
    print(
        f"reference recipe {ref_s:7.2f} s   worker path {worker_s:7.2f} s   ratio {ratio:.3f}   "
        f"same mask (largest component): {same}"
    )
    print(
        "  worker: "
        + ", ".join(f"{k} {timings[k]:.2f} s" for k in ("load", "save", "total") if k in timings)
        + ", engine "
        + ", ".join(
            f"{k} {engine[k]:.2f} s"
            for k in ("preprocess", "encoder", "propagate", "postprocess", "total")
        )
    )
    print(
        f"per slice: worker {1000 * worker_s / frames:.0f} ms, engine {per_slice:.0f} ms "
        f"(image encoder {1000 * engine['encoder'] / max(engine['slices_encoded'], 1):.0f} ms), "
        f"reference {1000 * ref_s / frames:.0f} ms"
    )
    print(
        f"lesion 2 (embeddings cached, {int(second_engine['slices_encoded'])} slices encoded): "
        f"{second_s:.2f} s, speedup {speedup:.2f}; engine {second_engine['total']:.2f} s"
    )
    print(
        f"click on slice {key2}: median {slice_prompt_ms:.0f} ms of "
        + ", ".join(f"{ms:.0f}" for ms in click_ms)
    )
    print(
        f"{args.big_slices}-slice volume in a fresh worker process: {big['seconds']:.1f} s, "
        f"{int(big_engine['slices_propagated'])} slices propagated, "
        f"peak RSS {big['peak_rss_mb']:.0f} MB; embeddings cached: "
        f"{big['cache']['slices']:.0f} slices, {big['cache']['mib']:.0f} MiB (budget "
        f"{backend.cache_bytes / 2**20:.0f} MiB)"  # type: ignore[attr-defined]
    )
    print(f"machine: {platform.processor() or platform.machine()}, {platform.python_version()}")
    print(
        f"RESULT medsam2_overhead ratio={ratio:.3f} second_lesion_speedup={speedup:.2f} "
        f"slice_prompt_ms={slice_prompt_ms:.0f} peak_rss_mb={big['peak_rss_mb']:.0f}"
    )


if __name__ == "__main__":
    main()
