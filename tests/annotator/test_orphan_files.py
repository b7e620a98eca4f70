"""No orphan mask files: a file whose version never committed (the saving process was killed,
or an enclosing transaction rolled back) is removed by the sweep once older than the grace
period, on the local disk and in S3; committed versions' files stay."""

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings

from annotator.annotation.services import (
    Author,
    mask_files_sweep,
    mask_version_load,
    mask_version_save,
)
from annotator.models import Lesion, MaskVersion
from tests.annotator.test_s3_storage import LOCATION, bucket_keys, s3, s3_endpoint  # noqa: F401
from tests.support.worker import REPO, database_url

MASKS = "pending-writes/masks"


class Rollback(Exception):
    pass


def save(lesion: Lesion, user: Any, fill: bool) -> MaskVersion:
    mask = np.full(lesion.task.series.volume.shape_zyx, fill, dtype=bool)
    return mask_version_save(lesion=lesion, mask=mask, source="human", author=Author(user=user))


def save_rolled_back(lesion: Lesion, user: Any) -> str:
    """A save whose enclosing transaction rolls back after the version was written: its file
    stays behind, as when a process dies before committing. Returns the file's key."""
    with pytest.raises(Rollback), transaction.atomic():
        version = save(lesion, user, fill=True)
        raise Rollback(version.storage_key)
    assert not MaskVersion.objects.filter(pk=version.pk).exists()
    return version.storage_key


def markers() -> list[str]:
    try:
        return default_storage.listdir(MASKS)[1]
    except FileNotFoundError:
        return []


@pytest.mark.django_db
def test_a_rolled_back_save_s_file_is_swept_and_committed_ones_stay(
    lesion: dict[str, Any], workspace: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    row = Lesion.objects.get(pk=lesion["id"])
    with django_capture_on_commit_callbacks(execute=True):
        kept = save(row, workspace["annotator"], fill=False)
    assert markers() == []  # a committed save leaves no marker
    orphan = save_rolled_back(row, workspace["annotator"])
    assert default_storage.exists(orphan) and len(markers()) == 1

    assert mask_files_sweep(older_than_s=3600) == []  # young: perhaps a save in progress
    assert default_storage.exists(orphan)
    out = io.StringIO()
    with override_settings(ORPHAN_GRACE_S=0):
        call_command("sweep", stdout=out)
    assert json.loads(out.getvalue())["orphan_files_removed"] == [orphan]
    assert not default_storage.exists(orphan) and markers() == []
    assert not mask_version_load(kept).any()  # the committed version's file is untouched


@pytest.mark.django_db
def test_a_failed_save_removes_its_file_and_marker_at_once(
    lesion: dict[str, Any], workspace: dict[str, Any], media_root: Path
) -> None:
    row = Lesion.objects.get(pk=lesion["id"])
    with pytest.raises(Exception, match="differs"):
        mask_version_save(
            lesion=row, mask=np.zeros((1, 2, 3), bool), source="human", author=Author()
        )
    save(row, workspace["annotator"], fill=True)
    with pytest.raises(Exception, match="changed meanwhile"):  # a stale parent: 409
        mask_version_save(
            lesion=row,
            mask=np.zeros(row.task.series.volume.shape_zyx, bool),
            source="human",
            author=Author(user=workspace["annotator"]),
            parent=None,
        )
    assert len(list(media_root.rglob("*.npy.gz"))) == 1  # the committed one only
    assert len(markers()) == 1  # its own, deleted when the test's transaction would commit


KILLED_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    import django
    django.setup()
    import numpy as np
    from annotator.annotation import services
    from annotator.models import Lesion
    from django.contrib.auth.models import User

    def die(**kwargs):  # the row is written, the transaction not yet committed
        os.kill(os.getpid(), signal.SIGKILL)

    services.audit_record = die
    lesion = Lesion.objects.get(pk=int(sys.argv[1]))
    mask = np.ones(lesion.task.series.volume.shape_zyx, dtype=bool)
    services.mask_version_save(
        lesion=lesion, mask=mask, source="human",
        author=services.Author(user=User.objects.get(username=sys.argv[2])),
    )
    """
)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_web_process_killed_mid_save_leaves_nothing_after_the_sweep(
    lesion: dict[str, Any], workspace: dict[str, Any], media_root: Path, settings: Any
) -> None:
    """A real process, SIGKILLed between writing the mask file and committing its version."""
    row = Lesion.objects.get(pk=lesion["id"])
    kept = save(row, workspace["annotator"], fill=False)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "annotator.settings",
        "DATABASE_URL": database_url(),
        "ANNOTATOR_MEDIA_ROOT": str(media_root),
        "ANNOTATOR_DATA_DIR": str(settings.DATA_DIR),
    }
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_SAVE, str(row.pk), workspace["annotator"].username],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr.decode()
    files = {str(p.relative_to(media_root)) for p in media_root.rglob("*.npy.gz")}
    assert len(files) == 2 and kept.storage_key in files
    assert list(MaskVersion.objects.values_list("pk", flat=True)) == [kept.pk]
    [orphan] = files - {kept.storage_key}

    assert mask_files_sweep(older_than_s=0) == [orphan]
    assert {str(p.relative_to(media_root)) for p in media_root.rglob("*.npy.gz")} == {
        kept.storage_key
    }
    assert markers() == []
    assert not mask_version_load(kept).any()


@pytest.mark.django_db
def test_orphan_mask_files_are_swept_from_s3(
    s3: Any,  # noqa: F811
    lesion: dict[str, Any],
    workspace: dict[str, Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    row = Lesion.objects.get(pk=lesion["id"])
    with django_capture_on_commit_callbacks(execute=True):
        kept = save(row, workspace["annotator"], fill=False)
    orphan = save_rolled_back(row, workspace["annotator"])
    masks = [key for key in bucket_keys(s3) if "/masks/" in key and "pending" not in key]
    assert sorted(masks) == sorted(f"{LOCATION}/{k}" for k in (kept.storage_key, orphan))
    assert len(markers()) == 1

    assert mask_files_sweep(older_than_s=3600) == []
    assert mask_files_sweep(older_than_s=0) == [orphan]
    left = [key for key in bucket_keys(s3) if "/masks/" in key or "pending-writes" in key]
    assert left == [f"{LOCATION}/{kept.storage_key}"]
    assert not mask_version_load(kept).any()
