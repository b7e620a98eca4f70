"""manage.py register_checkpoint: a checkpoint on the workers becomes a ModelVersion."""

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from inference.models import ModelVersion

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.django_db


def register(*args: Any) -> str:
    out = io.StringIO()
    call_command("register_checkpoint", *map(str, args), stdout=out)
    return out.getvalue()


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A tiny file shaped like a MedSAM2 release: torch.save({"model": state_dict})."""
    path = tmp_path / "MedSAM2_tiny.pt"
    layer = torch.nn.Linear(4, 2)
    torch.save({"model": layer.state_dict()}, path)
    return path


def test_a_site_wide_model_version(checkpoint: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(checkpoint.parent)
    out = register("MedSAM2_tiny.pt", "--name", "MedSAM2 tiny")
    version = ModelVersion.objects.get()
    assert version.project is None and version.name == "MedSAM2 tiny"
    assert version.backend == "inference.engine.medsam2.MedSAM2Backend"
    assert version.checkpoint == str(checkpoint.resolve())  # absolute, as the workers need it
    assert "torch.load: 2 tensors" in out and f"model version {version.pk}" in out
    with pytest.raises(CommandError, match="exists already"):
        register(checkpoint, "--name", "MedSAM2 tiny")


def test_for_a_project_made_active(
    checkpoint: Path, workspace: dict[str, Any], import_volume: Any
) -> None:
    project = workspace["project"]
    register(checkpoint, "--name", "round 2", "--project", project.slug, "--activate")
    project.refresh_from_db()
    version = ModelVersion.objects.get()
    assert version.project == project and project.active_model_version == version
    # the next round is pre-annotated by it
    from projects.services import round_open

    assert round_open(project=project).model_version == version


def test_an_inactive_project_model(checkpoint: Path, workspace: dict[str, Any]) -> None:
    register(checkpoint, "--name", "candidate", "--project", "alpha", "--backend", "a.b.C")
    project = workspace["project"]
    project.refresh_from_db()
    assert project.active_model_version is None
    assert ModelVersion.objects.get().backend == "a.b.C"


def write_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "x" * 2000)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "checkpoint not found: "),
        (lambda p: p.mkdir(), "is not a file"),
        (lambda p: p.write_bytes(b"x" * 10), "holds 10 bytes: too small"),
        (lambda p: p.write_bytes(b"x" * 5000), "is not a PyTorch checkpoint"),
        (write_zip, "cannot be loaded as a checkpoint"),
        (lambda p: torch.save({"state_dict": {"w": torch.zeros(3)}}, p), 'has no "model" entry'),
        (lambda p: torch.save({"model": {}}, p), "is not a non-empty state dict"),
    ],
)
def test_implausible_files_are_refused(tmp_path: Path, make: Any, message: str) -> None:
    path = tmp_path / "model.pt"
    make(path)
    with pytest.raises(CommandError, match=message):
        register(path, "--name", "bad")
    assert not ModelVersion.objects.exists()


def test_a_pickled_object_is_not_executed(tmp_path: Path) -> None:
    """weights_only=True: a checkpoint that pickles arbitrary objects is refused, not run."""
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": Path("/")}, path)
    with pytest.raises(CommandError, match="cannot be loaded as a checkpoint"):
        register(path, "--name", "evil")


def test_argument_errors(checkpoint: Path, workspace: dict[str, Any]) -> None:
    with pytest.raises(CommandError, match="no project with the slug 'nope'"):
        register(checkpoint, "--name", "x", "--project", "nope")
    with pytest.raises(CommandError, match="--activate needs --project"):
        register(checkpoint, "--name", "x", "--activate")
    with pytest.raises(CommandError, match="unknown backend 'nnunet'"):
        register(checkpoint, "--name", "x", "--backend", "nnunet")
    assert not ModelVersion.objects.exists()
