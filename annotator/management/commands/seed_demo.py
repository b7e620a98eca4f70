"""Create the demo project: three users, and synthetic CT phantoms with lesions to annotate.

All or nothing: the project and the phantoms it lacks are created in one transaction, and the
files of phantoms stored before a failure are removed, so a failed run leaves no half-made demo.
Run again, it completes a demo that lacks some of its phantoms (one left by an older version,
or a smaller ``--volumes``) and leaves a complete one alone.
"""

import tempfile
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from annotator.core import storage
from annotator.imaging.dicomweb.wado import warm_series_metadata
from annotator.imaging.storage_keys import series_folder
from annotator.models import Series
from inference.engine import make_ct_phantom, write_phantom
from projects.intake.image_import import ImportedVolume, volume_import
from projects.models import Project, Role
from projects.services import membership_set, project_create

DEMO_SLUG = "demo-ct-lesions"
DEMO_USERS = {"manager": Role.MANAGER, "annotator": Role.ANNOTATOR, "reviewer": Role.REVIEWER}


def phantom_name(seed: int) -> str:
    """The series description that identifies the demo's phantom ``seed``."""
    return f"Phantom {seed + 1}"


class Command(BaseCommand):
    help = (
        "Create the demo project, users and phantom volumes; run again, it adds the phantoms a "
        "demo lacks and leaves a complete one alone."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--volumes", type=int, default=3)
        parser.add_argument("--password", default="demo-password")

    def handle(self, *args: Any, volumes: int, password: str, **options: Any) -> None:
        if volumes < 0:
            raise CommandError(f"--volumes must be 0 or more, not {volumes}")
        User = get_user_model()
        users = {}
        for username in DEMO_USERS:
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_password(password)
                user.save()
            users[username] = user
        users["manager"].user_permissions.add(Permission.objects.get(codename="add_project"))
        users["manager"] = User.objects.get(pk=users["manager"].pk)  # drop the perm cache

        project = Project.objects.filter(slug=DEMO_SLUG).first()
        present = set(
            Series.objects.filter(study__project=project).values_list("description", flat=True)
            if project
            else []
        )
        missing = [seed for seed in range(volumes) if phantom_name(seed) not in present]
        if project is not None and not missing:
            self.stdout.write(f"demo project {DEMO_SLUG!r} already exists with its volumes")
            return
        with tempfile.TemporaryDirectory() as tmp:
            files = {}
            for seed in missing:  # generated before the transaction: it holds the write lock
                files[seed] = Path(tmp) / f"phantom-{seed}.nii.gz"
                write_phantom(make_ct_phantom(seed=seed), files[seed])
            created = project is None
            imported = self._seed(project, users, files)
        for item in imported:  # a cache: built after the commit, a failure only logged
            warm_series_metadata(item.series)
        verb = "created" if created else "completed"
        self.stdout.write(f"demo project {DEMO_SLUG!r} {verb}: {len(imported)} phantom(s) added")

    def _seed(
        self, project: Project | None, users: dict[str, Any], files: dict[int, Path]
    ) -> list[ImportedVolume]:
        """Create the project if need be and import the phantoms, in one transaction; on any
        failure remove the files already stored and say why."""
        imported: list[ImportedVolume] = []
        try:
            with transaction.atomic():
                if project is None:
                    project = project_create(
                        user=users["manager"],
                        name="Demo: CT lesions (synthetic phantoms)",
                        slug=DEMO_SLUG,
                        modality="CT",
                        lesion_classes=[{"name": "liver lesion"}, {"name": "lung nodule"}],
                        description="Synthetic CT-like phantoms generated on this machine.",
                    )
                for username, role in DEMO_USERS.items():
                    if not project.memberships.filter(user=users[username]).exists():
                        membership_set(project=project, user=users[username], role=role)
                for seed, path in files.items():
                    with open(path, "rb") as f:
                        imported.append(
                            volume_import(
                                project=project,
                                file=f,
                                filename=path.name,
                                description=phantom_name(seed),
                            )
                        )
        except BaseException as exc:
            for item in imported:  # their rows are rolled back: their files must go too
                storage.delete_tree(series_folder(item.series.original_prefix))
            if isinstance(exc, Exception):
                raise CommandError(f"the demo was not seeded, nothing was kept: {exc}") from exc
            raise
        return imported
