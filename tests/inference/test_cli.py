"""``python -m inference segment`` as a user runs it: a subprocess on files, no Django."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from inference.engine import Phantom, dice, key_slice_and_box

REPO = Path(__file__).resolve().parents[2]
PATH_OPTIONS = ("--image", "--out", "--checkpoint", "--model-dir")


def cli(*args: Any) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run(
        [sys.executable, "-m", "inference", *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def segment_args(image: Path, out: Path, reference: np.ndarray) -> list[Any]:
    key_slice, box = key_slice_and_box(reference)
    return ["segment", "--image", image, "--box", *box, "--slice", key_slice, "--out", out]


def check_mask(out: Path, image: sitk.Image, reference: np.ndarray) -> np.ndarray:
    mask = sitk.ReadImage(str(out))
    assert mask.GetPixelID() == sitk.sitkUInt8
    assert mask.GetSize() == image.GetSize()
    np.testing.assert_allclose(mask.GetSpacing(), image.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(mask.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(mask.GetDirection(), image.GetDirection(), atol=1e-6)
    array = sitk.GetArrayFromImage(mask)
    assert set(np.unique(array)) <= {0, 1}
    assert dice(array.astype(bool), reference) > 0.8
    return array


def test_segment_a_nifti_file(phantom: Phantom, phantom_file: Path, tmp_path: Path) -> None:
    reference = phantom.lesion_masks[0]
    out = tmp_path / "mask.nii.gz"
    run = cli(*segment_args(phantom_file, out, reference), "--window", 40, 400)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    summary = json.loads(run.stdout)
    assert summary["backend"] == "default" and summary["seconds"] >= 0
    mask = check_mask(out, sitk.ReadImage(str(phantom_file)), reference)
    assert summary["voxels"] == int(mask.sum()) > 0


def test_the_cli_does_not_import_django() -> None:
    code = "import sys, inference.cli; print('django' in sys.modules)"
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert run.stdout.strip() == "False"


def write_dicom_series(phantom: Phantom, folder: Path) -> None:
    """One CT image per slice, as a scanner writes them: int16 stored values, rescale, position."""
    folder.mkdir()
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    sx, sy, sz = phantom.spacing
    ox, oy, oz = phantom.origin
    for k, plane in enumerate(phantom.image):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        filename = folder / f"{k:03d}.dcm"
        ds = FileDataset(str(filename), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientID, ds.InstanceNumber = "CT", "PHANTOM", k + 1
        ds.ImagePositionPatient = [ox, oy, oz + k * sz]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [sy, sx]
        ds.SliceThickness = sz
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = (plane.astype(np.int32) + 1024).astype(np.uint16).tobytes()
        pydicom.dcmwrite(filename, ds, enforce_file_format=True)


def test_segment_a_dicom_folder(phantom: Phantom, tmp_path: Path) -> None:
    folder = tmp_path / "series"
    write_dicom_series(phantom, folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), phantom.image)
    reference = phantom.lesion_masks[1]
    out = tmp_path / "mask.nrrd"
    run = cli(*segment_args(folder, out, reference))
    assert run.returncode == 0, run.stderr
    check_mask(out, image, reference)
    np.testing.assert_allclose(sitk.ReadImage(str(out)).GetOrigin(), phantom.origin, atol=1e-4)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--image": "missing.nii.gz"}, "error: image not found: "),
        ({"--image": "garbage.nii.gz"}, "error: cannot read "),
        ({"--image": "empty"}, "error: no DICOM series found in the folder "),
        ({"--box": [28, 46, 400, 60]}, "lies outside the slice of 96x96 pixels"),
        ({"--slice": 99}, "key_slice 99 is outside 0..23"),
        ({"--backend": "nnunet"}, "argument --backend: invalid choice: 'nnunet'"),
        ({"--backend": "medsam2", "--checkpoint": "nope.pt"}, "error: checkpoint not found: "),
        ({"--checkpoint": "real.pt", "--backend": "classical"}, "takes no checkpoint file"),
        ({"--model-dir": "models"}, "error: no learned model is available in "),
        ({"--model-dir": "missing"}, "error: model folder not found: "),
        ({"--out": "nowhere/mask.nii.gz"}, "error: output folder does not exist: "),
        ({"--out": "mask.txt"}, "error: cannot write "),
    ],
)
def test_errors_exit_2_with_one_line(
    phantom: Phantom, phantom_file: Path, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    (tmp_path / "garbage.nii.gz").write_bytes(b"not an image at all" * 50)
    (tmp_path / "empty").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "real.pt").write_bytes(b"x" * 100)
    options: dict[str, Any] = {
        "--image": phantom_file,
        "--box": [28, 46, 44, 60],
        "--slice": 4,
        "--out": "mask.nii.gz",
    }
    options.update(change)
    args: list[Any] = ["segment"]
    for name, value in options.items():
        if name in PATH_OPTIONS and isinstance(value, str):
            value = tmp_path / value
        args += [name, *(value if isinstance(value, list) else [value])]
    run = cli(*args)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], run.stderr
    assert not (tmp_path / "mask.nii.gz").exists()


def test_medsam2_is_reported_as_missing_or_needs_its_checkpoint(
    phantom: Phantom, phantom_file: Path, tmp_path: Path
) -> None:
    """Without the backend module the CLI says so; with it, a bogus checkpoint is refused."""
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint")
    args = segment_args(phantom_file, tmp_path / "m.nii.gz", phantom.lesion_masks[0])
    run = cli(*args, "--backend", "medsam2", "--checkpoint", bogus, "--device", "cpu")
    assert run.returncode == 2 and run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1
    if importlib.util.find_spec("inference.engine.medsam2") is None:
        assert run.stderr.startswith("error: the medsam2 backend is not installed: ")


def test_model_dir_uses_the_learned_model(
    phantom: Phantom, phantom_file: Path, tmp_path: Path
) -> None:
    learned = pytest.importorskip("inference.engine.learned")
    from sklearn.dummy import DummyClassifier

    features = np.zeros((4, len(learned.FEATURE_NAMES)), dtype=np.float32)
    classifier = DummyClassifier(strategy="constant", constant=1).fit(features, [0, 1, 0, 1])
    models = tmp_path / "models"
    models.mkdir()
    learned.LearnedModel(classifier, meta={"round": 3}).save(models / "model.joblib")
    args = segment_args(phantom_file, tmp_path / "m.nii.gz", phantom.lesion_masks[0])
    run = cli(*args, "--model-dir", models)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["backend_info"]["model"] == {"round": 3}
    (models / "model.joblib").write_bytes(b"corrupt")
    run = cli(*args, "--model-dir", models)
    assert run.returncode == 2 and "is not a readable model" in run.stderr, run.stderr
