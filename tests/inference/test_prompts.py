"""Click points and mask prompts through the segment API: recorded on the job, handed to the
engine, a corrected slice survives, and bad prompts are refused with field errors."""

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from annotator.annotation.services import Author, mask_version_load, mask_version_save
from annotator.models import Lesion, MaskVersion
from inference.engine import ClassicalBackend, LesionPrompt, key_slice_and_box
from inference.models import InferenceJob
from inference.services import MAX_POINTS

pytestmark = pytest.mark.django_db


@pytest.fixture
def seen_prompts(monkeypatch: Any) -> list[LesionPrompt]:
    """The prompts the (default) backend is given."""
    seen: list[LesionPrompt] = []
    segment = ClassicalBackend.segment

    def spy(self: Any, volume: Any, prompts: Any, **kwargs: Any) -> Any:
        seen.extend(prompts)
        return segment(self, volume, prompts, **kwargs)

    monkeypatch.setattr(ClassicalBackend, "segment", spy)
    return seen


def post(lesion: dict[str, Any], body: dict[str, Any], capture: Callable[..., Any]) -> Any:
    with capture(execute=True):
        return lesion["client"].post(f"/api/lesions/{lesion['id']}/segment/", body, format="json")


def save_human_mask(lesion: dict[str, Any], mask: np.ndarray, user: Any) -> MaskVersion:
    return mask_version_save(
        lesion=Lesion.objects.get(pk=lesion["id"]),
        mask=mask,
        source="human",
        author=Author(user=user),
    )


def test_points_are_recorded_on_the_job_and_given_to_the_backend(
    lesion: dict[str, Any],
    phantom: Any,
    seen_prompts: list[LesionPrompt],
    django_capture_on_commit_callbacks: Any,
) -> None:
    k, (x0, y0, x1, y1) = key_slice_and_box(phantom.lesion_masks[0])
    inside = [(x0 + x1) // 2, (y0 + y1) // 2, k]
    outside = [0, 0, k]
    body = {"key_slice": k, "box": [x0, y0, x1, y1], "positive_points": [inside]}
    response = post(
        lesion, {**body, "negative_points": [outside]}, django_capture_on_commit_callbacks
    )
    assert response.status_code == 202, response.content
    job = InferenceJob.objects.get(pk=response.json()["id"])
    assert job.state == "succeeded", job.error
    assert job.prompt == {
        "key_slice": k,
        "box": [x0, y0, x1, y1],
        "positive_points": [inside],
        "negative_points": [outside],
    }
    [prompt] = seen_prompts
    assert prompt.positive_points == (tuple(inside),)
    assert prompt.negative_points == (tuple(outside),)
    assert prompt.kind == "box+points"


def test_a_mask_prompt_propagates_the_saved_slice_and_keeps_it_exactly(
    lesion: dict[str, Any],
    workspace: dict[str, Any],
    phantom: Any,
    seen_prompts: list[LesionPrompt],
    django_capture_on_commit_callbacks: Any,
) -> None:
    reference = phantom.lesion_masks[0]
    k, _box = key_slice_and_box(reference)
    corrected = reference.copy()
    # the annotator's correction: a slice the classical backend would never draw (a notch)
    z = k + 1
    rows, cols = np.nonzero(corrected[z])
    corrected[z, rows.min() : rows.max() + 1, cols.min() : (cols.min() + cols.max()) // 2] = False
    assert corrected[z].any()
    saved = save_human_mask(lesion, corrected, workspace["annotator"])

    response = post(lesion, {"mask_slice": z}, django_capture_on_commit_callbacks)
    assert response.status_code == 202, response.content
    job = InferenceJob.objects.get(pk=response.json()["id"])
    assert job.state == "succeeded", job.error
    # no box given: the slice and the box around its mask stand in
    rows, cols = np.nonzero(corrected[z])
    box = [int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())]
    assert job.prompt == {"key_slice": z, "box": box, "mask_slice": z, "mask_version": saved.pk}
    [prompt] = seen_prompts
    assert set(prompt.mask_slices) == {z} and prompt.kind == "box+mask"
    np.testing.assert_array_equal(prompt.mask_slices[z], corrected[z])
    assert job.result is not None
    result = mask_version_load(job.result)
    np.testing.assert_array_equal(result[z], corrected[z])
    assert job.result.parent_id == saved.pk and job.result.source == "model"
    assert result[k].any()  # propagated beyond the given slice


def test_a_z_range_keeps_the_saved_mask_outside_it(
    lesion: dict[str, Any],
    workspace: dict[str, Any],
    phantom: Any,
    seen_prompts: list[LesionPrompt],
    django_capture_on_commit_callbacks: Any,
) -> None:
    reference = phantom.lesion_masks[0]
    k, box = key_slice_and_box(reference)
    saved_mask = reference.copy()
    saved_mask[0] = True  # a stray slice far away: outside the range, so it must stay
    save_human_mask(lesion, saved_mask, workspace["annotator"])
    body = {"key_slice": k, "box": list(box), "mask_slice": k, "z_range": [k - 1, k + 1]}
    response = post(lesion, body, django_capture_on_commit_callbacks)
    assert response.status_code == 202, response.content
    job = InferenceJob.objects.get(pk=response.json()["id"])
    assert job.state == "succeeded", job.error
    assert seen_prompts[0].z_range == (k - 1, k + 1)
    assert job.result is not None
    result = mask_version_load(job.result)
    np.testing.assert_array_equal(result[: k - 1], saved_mask[: k - 1])
    np.testing.assert_array_equal(result[k + 2 :], saved_mask[k + 2 :])
    np.testing.assert_array_equal(result[k], saved_mask[k])


def test_bad_prompts_are_refused_with_field_errors(
    lesion: dict[str, Any], workspace: dict[str, Any], phantom: Any
) -> None:
    url = f"/api/lesions/{lesion['id']}/segment/"
    client = lesion["client"]
    depth, _height, width = lesion["shape"]
    k, box = key_slice_and_box(phantom.lesion_masks[0])
    good = {"key_slice": k, "box": list(box)}

    def refused(body: dict[str, Any], field: str) -> str:
        response = client.post(url, body, format="json")
        assert response.status_code == 400, response.content
        assert field in response.json(), response.json()
        return str(response.json()[field])

    assert "outside the volume" in refused(
        {**good, "positive_points": [[width, 0, k]]}, "positive_points"
    )
    refused({**good, "negative_points": [[1, 2, depth]]}, "negative_points")
    refused({**good, "positive_points": [[1, 2]]}, "positive_points")
    refused({**good, "positive_points": [[1, 2, k]] * (MAX_POINTS + 1)}, "positive_points")
    assert "no saved mask" in refused({"mask_slice": k}, "mask_slice")
    refused({"key_slice": k}, "box")
    refused({}, "key_slice")
    refused({**good, "z_range": [k + 1, k + 2]}, "z_range")
    refused({**good, "z_range": [3, 1]}, "z_range")

    mask = np.zeros(lesion["shape"], bool)
    mask[k] = phantom.lesion_masks[0][k]
    save_human_mask(lesion, mask, workspace["annotator"])
    assert "empty" in refused({"mask_slice": k + 3}, "mask_slice")
    refused({"mask_slice": depth}, "mask_slice")
    assert not InferenceJob.objects.exists()
