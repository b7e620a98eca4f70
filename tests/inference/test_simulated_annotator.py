"""The simulated annotators of inference/simulated_annotator.py on generated CT phantoms, with the
classical backend: what each does to a pre-segmentation, the prompts it sends, what it costs."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from inference.engine import (
    ClassicalBackend,
    ImageVolume,
    LesionPrompt,
    ProgressCallback,
    SegmentationResult,
    key_slice_and_box,
    make_ct_phantom,
    validate_prompts,
)
from inference.services import _keep_human_slices
from inference.simulated_annotator import (
    CostModel,
    PromptPolicy,
    backend_segmenter,
    corrective_prompt,
    next_slice,
    prompts_then_recontour,
    recontour_only,
    replace_in_range,
    tight_box,
    wrong_slices,
)

SHAPE = (32, 96, 96)
FREE = CostModel(box_s=0.0, review_slice_s=0.0, range_mark_s=0.0)  # only the brush costs


class Recording(ClassicalBackend):
    """The classical backend, keeping the prompts it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[LesionPrompt] = []

    def segment(
        self,
        volume: ImageVolume,
        prompts: Sequence[LesionPrompt],
        *,
        progress: ProgressCallback | None = None,
    ) -> SegmentationResult:
        self.sent.extend(prompts)
        return super().segment(volume, prompts, progress=progress)


@dataclass
class Case:
    volume: ImageVolume
    reference: np.ndarray
    prompt: LesionPrompt


def phantom_cases(seed: int) -> list[Case]:
    phantom = make_ct_phantom(seed, shape=SHAPE, spacing=(1.0, 1.0, 2.0), n_lesions=3)
    volume = ImageVolume(phantom.image, phantom.spacing, "CT", window=(40.0, 400.0))
    cases = []
    for i, reference in enumerate(phantom.lesion_masks):
        k, box = key_slice_and_box(reference)
        cases.append(Case(volume, reference, LesionPrompt(f"lesion{i}", k, box)))
    return cases


@pytest.fixture(scope="module")
def seed1() -> list[Case]:
    return phantom_cases(1)


def pre_segmented(case: Case) -> np.ndarray:
    return ClassicalBackend().segment(case.volume, [case.prompt]).masks[case.prompt.lesion_id]


def test_replace_in_range_is_the_rule_of_the_products_jobs() -> None:
    rng = np.random.default_rng(0)
    current = rng.random((12, 8, 8)) < 0.3
    result = rng.random((12, 8, 8)) < 0.6
    for z_range in ((0, 11), (3, 7), (5, 5), (0, 4), (9, 11)):
        mine = replace_in_range(current, result, z_range)
        prompt = LesionPrompt("x", z_range[0], (0, 0, 1, 1), z_range=z_range)
        assert np.array_equal(mine, _keep_human_slices(result, prompt, current))
        z0, z1 = z_range
        assert np.array_equal(mine[z0 : z1 + 1], result[z0 : z1 + 1])
        assert np.array_equal(mine[:z0], current[:z0])
        assert np.array_equal(mine[z1 + 1 :], current[z1 + 1 :])
    assert not np.shares_memory(replace_in_range(current, result, (0, 11)), result)


def test_a_corrective_prompt_propagates_away_from_the_key_slice() -> None:
    prompt = LesionPrompt("x", 10, (1, 1, 5, 5))
    above = corrective_prompt(prompt, 13, (2, 2, 4, 4), (0, 31))
    assert (above.key_slice, above.box, above.direction, above.z_range) == (
        13, (2, 2, 4, 4), "forward", (13, 31),
    )  # fmt: skip
    below = corrective_prompt(prompt, 7, (2, 2, 4, 4), (5, 20))
    assert (below.key_slice, below.direction, below.z_range) == (7, "reverse", (5, 7))
    assert below.lesion_id == "x" and not below.mask_slices
    for sent in (above, below):
        validate_prompts(ImageVolume(np.zeros((32, 8, 8), np.int16)), [sent])


def test_one_corrective_box_that_fixes_two_missed_slices_costs_one_box() -> None:
    case = phantom_cases(4)[0]  # key slice 6, lesion on slices 3..9
    initial = pre_segmented(case)
    assert case.prompt.key_slice == 6 and set(wrong_slices(initial, case.reference)) <= {3}
    initial[3:5] = False  # the pre-segmentation missed the two slices below slice 5
    assert sorted(wrong_slices(initial, case.reference)) == [3, 4]
    cost = CostModel()
    backend = Recording()
    done, mask = prompts_then_recontour(
        backend_segmenter(backend, case.volume),
        case.prompt,
        case.reference,
        cost,
        PromptPolicy(slice_range=True),
        initial=initial,
    )
    (sent,) = backend.sent  # one box, on the wrong slice nearest the key slice, downwards
    assert sent.key_slice == 4 and sent.box == tight_box(case.reference[4])
    assert sent.direction == "reverse" and sent.z_range == (3, 4)  # to the range's first slice
    assert (done.prompts, done.undone, done.erased_slices, done.corrected_slices) == (1, 0, 0, 0)
    assert not wrong_slices(mask, case.reference)
    assert np.array_equal(mask[5:], initial[5:])  # outside the z range: kept
    first_look = int(np.count_nonzero((initial | case.reference).any(axis=(1, 2))))
    assert first_look == 7  # the lesion's slices, the two missed ones included
    assert done.reviewed_slices == first_look + 2  # and the two the correction changed
    assert done.range_marks == 2
    assert done.seconds == pytest.approx(
        cost.box_s + 2 * cost.range_mark_s + cost.review_slice_s * 9 + cost.box_s
    )
    # The re-contour-only annotator pays for both slices with the brush instead.
    brush = recontour_only(initial, case.reference, cost)
    assert brush.corrected_slices == 2
    assert brush.seconds == cost.box_s + cost.review_slice_s * first_look + 2 * 30.0


@pytest.mark.parametrize(
    ("missed", "slice_range", "expected"),
    [
        # (slice, direction, z_range) of each correction sent, nearest the key slice first
        ((22, 23), True, [(22, "forward", (22, 23)), (23, "forward", (23, 23))]),
        ((17, 18), True, [(18, "reverse", (17, 18)), (17, "reverse", (17, 17))]),
        ((22,), False, [(22, "forward", (22, SHAPE[0] - 1))]),
        ((18,), False, [(18, "reverse", (0, 18))]),
    ],
)
def test_corrections_are_the_viewers_propagate_requests(
    seed1: list[Case],
    missed: tuple[int, ...],
    slice_range: bool,
    expected: list[tuple[int, str, tuple[int, int]]],
) -> None:
    case = seed1[2]  # key slice 20, lesion on slices 17..23, every slice right at first
    initial = pre_segmented(case)
    assert not wrong_slices(initial, case.reference)
    initial[list(missed)] = False
    backend = Recording()
    done, mask = prompts_then_recontour(
        backend_segmenter(backend, case.volume),
        case.prompt,
        case.reference,
        CostModel(),
        PromptPolicy(slice_range=slice_range, order="nearest"),
        initial=initial,
    )
    assert [(p.key_slice, p.direction, p.z_range) for p in backend.sent] == expected
    reached: set[int] = set()
    for sent in backend.sent:
        assert sent.box == tight_box(case.reference[sent.key_slice])
        assert sent.lesion_id == case.prompt.lesion_id and not sent.mask_slices
        assert sent.z_range is not None
        reached |= set(range(sent.z_range[0], sent.z_range[1] + 1))
    # Only the slices of the z ranges sent can have changed.
    changed = set(np.flatnonzero((mask != initial).any(axis=(1, 2))).tolist())
    assert changed <= reached
    assert done.prompts == len(expected)


def test_a_correction_that_does_not_help_is_undone_but_paid_for(seed1: list[Case]) -> None:
    case = seed1[0]  # key slice 22
    initial = pre_segmented(case)
    initial[21] = False
    cost = CostModel()
    done, mask = prompts_then_recontour(
        backend_segmenter(ClassicalBackend(), case.volume),
        case.prompt,
        case.reference,
        cost,
        PromptPolicy(slice_range=True),
        initial=initial,
    )
    assert (done.prompts, done.undone, done.corrected_slices) == (1, 1, 1)
    assert np.array_equal(mask, initial)  # undone
    first_look = int(np.count_nonzero((initial | case.reference).any(axis=(1, 2))))
    assert done.reviewed_slices > first_look  # it looked at what the correction changed
    assert done.seconds == pytest.approx(
        2 * cost.box_s + 2 * cost.range_mark_s + 2.0 * done.reviewed_slices + 30.0
    )


def test_a_false_slice_is_erased_for_one_box(seed1: list[Case]) -> None:
    case = seed1[2]
    initial = pre_segmented(case)
    initial[27, 40:46, 40:46] = True  # a slice the lesion does not reach
    backend = Recording()
    done, mask = prompts_then_recontour(
        backend_segmenter(backend, case.volume),
        case.prompt,
        case.reference,
        CostModel(),
        PromptPolicy(slice_range=False),
        initial=initial,
    )
    assert backend.sent == []  # no prompt: an eraser stroke
    assert (done.erased_slices, done.prompts, done.corrected_slices) == (1, 0, 0)
    assert not mask[27].any() and np.array_equal(mask[:27], initial[:27])
    assert done.seconds == 5.0 + 2.0 * done.reviewed_slices + 5.0


def test_the_slice_range_bounds_the_first_mask_and_costs_two_marks(seed1: list[Case]) -> None:
    case = seed1[2]
    initial = pre_segmented(case)
    initial[[12, 27], 40:46, 40:46] = True  # outside the lesion's slices 17..23
    backend = Recording()
    done, mask = prompts_then_recontour(
        backend_segmenter(backend, case.volume),
        case.prompt,
        case.reference,
        CostModel(),
        PromptPolicy(slice_range=True),
        initial=initial,
    )
    assert backend.sent == [] and done.range_marks == 2
    assert not mask[:17].any() and not mask[24:].any()
    assert done.seconds == 5.0 + 2 * 1.5 + 2.0 * 7
    # Sent to the backend, the first prompt carries the range as its z_range.
    done, _ = prompts_then_recontour(
        backend_segmenter(backend, case.volume),
        case.prompt,
        case.reference,
        CostModel(),
        PromptPolicy(slice_range=True),
    )
    assert backend.sent[0].z_range == (17, 23) and backend.sent[0].box == case.prompt.box


def test_the_next_slice_to_correct() -> None:
    wrong = {19: 0.6, 24: 0.0, 26: 0.3, 23: 0.0}
    assert next_slice(wrong, 20, "worst") == 23  # Dice 0, and nearer the key slice than 24
    assert next_slice(wrong, 20, "nearest") == 19
    assert next_slice(wrong, 20, "outermost") == 26
    assert next_slice({19: 0.2, 21: 0.2}, 20, "nearest") == 21  # a tie: the higher slice
    assert next_slice({19: 0.2, 21: 0.2}, 20, "worst") == 21
    assert PromptPolicy().order == "worst"


def test_a_slice_too_small_to_box_is_left_to_the_brush(seed1: list[Case]) -> None:
    case = seed1[2]
    initial = pre_segmented(case)
    reference = case.reference.copy()
    reference[23] = False
    reference[23, 50, 50:52] = True  # the lesion's last slice: two voxels
    assert sorted(wrong_slices(initial, reference)) == [23]
    backend = Recording()
    done, mask = prompts_then_recontour(
        backend_segmenter(backend, case.volume),
        case.prompt,
        reference,
        CostModel(),
        PromptPolicy(slice_range=False),
        initial=initial,
    )
    assert backend.sent == [] and np.array_equal(mask, initial)
    assert (done.prompts, done.corrected_slices) == (0, 1)


@pytest.mark.parametrize("seed", [0, 2, 3])
def test_prompting_never_costs_more_when_the_prompts_are_free(seed: int) -> None:
    """With boxes, marks and looks free, the prompting annotator re-contours at most the
    slices the re-contour-only one does: corrections that do not help are undone."""
    cheaper = 0
    for case in phantom_cases(seed):
        segment = backend_segmenter(ClassicalBackend(), case.volume)
        pred = segment(case.prompt)
        brush = recontour_only(pred, case.reference, FREE)
        for policy in (
            PromptPolicy(slice_range=False),
            PromptPolicy(slice_range=True),
            PromptPolicy(slice_range=True, order="worst", max_prompts=6),
        ):
            initial = None if policy.slice_range else pred
            done, _ = prompts_then_recontour(
                segment, case.prompt, case.reference, FREE, policy, initial=initial
            )
            assert done.seconds <= brush.seconds, (seed, case.prompt.lesion_id, policy)
            assert done.prompts + done.erased_slices <= policy.max_prompts
            cheaper += done.seconds < brush.seconds
    assert cheaper > 0  # the corrections do fix slices on these phantoms


def test_no_prompts_and_no_range_is_the_recontour_only_annotator(seed1: list[Case]) -> None:
    cost = CostModel()
    for case in seed1:
        pred = pre_segmented(case)
        done, mask = prompts_then_recontour(
            backend_segmenter(ClassicalBackend(), case.volume),
            case.prompt,
            case.reference,
            cost,
            PromptPolicy(max_prompts=0, slice_range=False),
            initial=pred,
        )
        assert np.array_equal(mask, pred)
        assert done == recontour_only(pred, case.reference, cost)


def test_the_cost_model_and_the_policy_refuse_bad_values() -> None:
    assert CostModel.from_mapping({"range_mark_s": 3}).range_mark_s == 3.0
    assert CostModel.from_mapping({"box_s": 7}) == CostModel(box_s=7.0)
    with pytest.raises(ValueError, match="range_mark_s must be a number >= 0"):
        CostModel(range_mark_s=-1)
    with pytest.raises(ValueError, match="box_s must be a number >= 0"):
        CostModel(box_s=float("nan"))
    with pytest.raises(ValueError, match="max_prompts"):
        PromptPolicy(max_prompts=-1)
    with pytest.raises(ValueError, match="order must be one of nearest, worst"):
        PromptPolicy(order="random")
