"""`manage.py seed_demo`: all or nothing, and a second run completes a half-made demo."""

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from annotator.management.commands import seed_demo
from annotator.models import Series, Volume
from projects.models import Project

pytestmark = pytest.mark.django_db


def phantoms() -> list[str]:
    return sorted(
        Series.objects.filter(study__project__slug=seed_demo.DEMO_SLUG).values_list(
            "description", flat=True
        )
    )


def files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_a_seed_refused_by_the_upload_limit_leaves_nothing_and_a_rerun_makes_the_demo(
    settings: Any, media_root: Path
) -> None:
    settings.MAX_UPLOAD_BYTES = 1000  # below a phantom's size
    with pytest.raises(CommandError, match="larger than the upload limit"):
        call_command("seed_demo", "--volumes", "2", stdout=io.StringIO())
    assert not Project.objects.filter(slug=seed_demo.DEMO_SLUG).exists()
    assert files(media_root) == []

    settings.MAX_UPLOAD_BYTES = 2 * 1024**3
    out = io.StringIO()
    call_command("seed_demo", "--volumes", "2", stdout=out)
    assert "created: 2 phantom(s) added" in out.getvalue()
    assert phantoms() == ["Phantom 1", "Phantom 2"]
    project = Project.objects.get(slug=seed_demo.DEMO_SLUG)
    assert project.memberships.count() == 3


def test_a_failure_half_way_removes_the_files_already_stored(
    media_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = seed_demo.volume_import
    calls: list[int] = []

    def second_fails(**kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("No space left on device")
        return real(**kwargs)

    monkeypatch.setattr(seed_demo, "volume_import", second_fails)
    with pytest.raises(CommandError, match="No space left"):
        call_command("seed_demo", "--volumes", "2", stdout=io.StringIO())
    assert len(calls) == 2  # the first phantom was stored, then rolled back
    assert not Project.objects.filter(slug=seed_demo.DEMO_SLUG).exists()
    assert not Volume.objects.exists()
    assert files(media_root) == []


def test_a_half_made_demo_is_completed_and_a_complete_one_left_alone(media_root: Path) -> None:
    # A demo project without its phantoms, as a run killed half-way by an older version left it.
    call_command("seed_demo", "--volumes", "0", stdout=io.StringIO())
    assert Project.objects.filter(slug=seed_demo.DEMO_SLUG).exists() and phantoms() == []
    out = io.StringIO()
    call_command("seed_demo", "--volumes", "1", stdout=out)
    assert "completed: 1 phantom(s) added" in out.getvalue()
    assert phantoms() == ["Phantom 1"]
    assert Project.objects.get(slug=seed_demo.DEMO_SLUG).memberships.count() == 3

    call_command("seed_demo", "--volumes", "2", stdout=io.StringIO())  # fewer than asked
    assert phantoms() == ["Phantom 1", "Phantom 2"]
    out = io.StringIO()
    call_command("seed_demo", "--volumes", "2", stdout=out)
    assert "already exists" in out.getvalue()
    assert phantoms() == ["Phantom 1", "Phantom 2"]
    with pytest.raises(CommandError, match="--volumes"):
        call_command("seed_demo", "--volumes", "-1", stdout=io.StringIO())
