"""Effort per lesion: active time with the idle cut-off, tool counts, model versus final mask."""

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from annotator.annotation.services import Author, effort_record, mask_version_save
from annotator.models import Lesion
from inference.engine.metrics import hd95, slices_to_fix
from projects import effort as effort_module
from projects.effort import MaskMetrics, active_seconds, task_efforts
from projects.models import Task

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def block(shape: tuple[int, int, int], z: range, y: range, x: range) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[z.start : z.stop, y.start : y.stop, x.start : x.stop] = True
    return mask


# ---- active time ---------------------------------------------------------------------------


def test_active_time_counts_an_interval_up_to_the_idle_cut_off_after_the_last_signal() -> None:
    # 300 s open with no activity: only the first 120 s count.
    assert active_seconds([(at(0), at(300), 1)], [], cutoff_s=120) == {1: 120}
    # A brush stroke at 150 s keeps the work going until 270 s: 120 + 120.
    assert active_seconds([(at(0), at(300), 1)], [at(150)], cutoff_s=120) == {1: 240}


def test_active_time_counts_overlapping_intervals_once_and_keeps_lesions_apart() -> None:
    intervals = [
        (at(0), at(60), 1),
        (at(0), at(60), 1),
        (at(30), at(90), None),
        (at(100), at(110), 2),
    ]
    assert active_seconds(intervals, [], cutoff_s=120) == {1: 60, None: 30, 2: 10}


# ---- model versus final ----------------------------------------------------------------------


def test_hd95_and_slices_to_fix_on_blocks() -> None:
    shape = (24, 32, 32)
    model = block(shape, range(10, 14), range(5, 15), range(5, 15))
    final = block(shape, range(10, 13), range(5, 15), range(5, 15))
    # The extra top layer of the model is one slice (2.5 mm) from the final surface.
    assert hd95(model, final, (0.8, 0.8, 2.5)) == pytest.approx(2.5)
    assert hd95(final, final, (0.8, 0.8, 2.5)) == 0.0
    half = final.copy()
    half[11, :, 10:] = False
    assert slices_to_fix(half, final, over="ref") == (1, 3)
    assert slices_to_fix(model, final, over="union") == (1, 4)


@pytest.fixture
def effort_task(workspace: dict[str, Any], lesion: dict[str, Any]) -> dict[str, Any]:
    task = Task.objects.get(lesions=lesion["id"])
    return {**workspace, "task": task, "lesion": Lesion.objects.get(pk=lesion["id"])}


def test_lesion_effort_compares_the_first_model_mask_with_the_final_one(
    effort_task: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    lesion, task, annotator = effort_task["lesion"], effort_task["task"], effort_task["annotator"]
    shape = task.series.volume.shape_zyx
    model = block(shape, range(10, 14), range(40, 50), range(40, 50))
    final = block(shape, range(10, 13), range(40, 50), range(40, 50))
    mask_version_save(
        lesion=lesion, mask=model, source="model", author=Author(backend="test-model")
    )
    mask_version_save(lesion=lesion, mask=final, source="human", author=Author(user=annotator))
    effort_record(
        task=task,
        user=annotator,
        intervals=[
            {"started_at": at(0), "ended_at": at(40), "lesion": lesion.pk},
            {"started_at": at(40), "ended_at": at(50)},
        ],
        interactions=[
            {"tool": "box", "at": at(1), "lesion": lesion.pk},
            {"tool": "eraser", "at": at(20), "lesion": lesion.pk},
            {"tool": "eraser", "at": at(21), "lesion": lesion.pk},
        ],
    )

    [effort] = task_efforts(Task.objects.filter(pk=task.pk))
    [row] = effort.lesions
    assert effort.active_s == 50
    assert row.active_s == 50  # 40 s on the lesion + the task's 10 s shared by its one lesion
    assert row.interactions["eraser"] == 2 and row.interactions["box"] == 1
    assert row.interactions["brush"] == 0
    assert row.model_version == "test-model"
    assert row.round == 0 and row.annotator == annotator.username
    m = row.metrics
    assert m.model_dice == pytest.approx(2 * 300 / 700)
    assert m.model_hd95_mm == pytest.approx(2.5)
    assert m.edited_fraction == pytest.approx(100 / 400)
    assert m.accepted_without_edits is False
    assert (m.slices, m.slices_fixed) == (3, 1)  # the model's extra slice was erased

    # The metrics of a pair of versions are cached: a second read loads no mask.
    monkeypatch.setattr(
        effort_module, "mask_version_load", lambda version: pytest.fail("loaded a mask")
    )
    [again] = task_efforts(Task.objects.filter(pk=task.pk))
    assert again.lesions[0].metrics == m


def test_a_model_mask_kept_as_it_is_was_accepted_without_edits(
    effort_task: dict[str, Any],
) -> None:
    lesion, task, annotator = effort_task["lesion"], effort_task["task"], effort_task["annotator"]
    shape = task.series.volume.shape_zyx
    model = block(shape, range(8, 12), range(30, 40), range(30, 40))
    mask_version_save(lesion=lesion, mask=model, source="model", author=Author(backend="m"))
    [effort] = task_efforts(Task.objects.filter(pk=task.pk))
    assert effort.lesions[0].metrics == MaskMetrics(
        model_dice=1.0,
        model_hd95_mm=0.0,
        edited_fraction=0.0,
        accepted_without_edits=True,
        slices=4,
        slices_fixed=0,
    )
    # A human save of the very same mask is still no edit.
    mask_version_save(lesion=lesion, mask=model, source="human", author=Author(user=annotator))
    [effort] = task_efforts(Task.objects.filter(pk=task.pk))
    assert effort.lesions[0].metrics.accepted_without_edits is True


def test_a_manual_lesion_has_no_model_metrics_and_every_slice_was_drawn(
    effort_task: dict[str, Any],
) -> None:
    lesion, task, annotator = effort_task["lesion"], effort_task["task"], effort_task["annotator"]
    final = block(task.series.volume.shape_zyx, range(3, 8), range(10, 20), range(10, 20))
    mask_version_save(lesion=lesion, mask=final, source="human", author=Author(user=annotator))
    [effort] = task_efforts(Task.objects.filter(pk=task.pk))
    row = effort.lesions[0]
    assert row.model_version == ""
    assert row.metrics == MaskMetrics(slices=5, slices_fixed=5)
