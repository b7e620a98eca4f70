"""Create the demo project: three users, and synthetic CT phantoms with lesions to annotate."""

import tempfile
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand
from django.db import transaction

from annotator.dicomweb.wado import warm_series_metadata
from annotator.volumes import volume_import
from inference.engine import make_ct_phantom, write_phantom
from projects.models import Project, Role
from projects.services import membership_set, project_create

DEMO_SLUG = "demo-ct-lesions"
DEMO_USERS = {"manager": Role.MANAGER, "annotator": Role.ANNOTATOR, "reviewer": Role.REVIEWER}


class Command(BaseCommand):
    help = "Create the demo project, users and phantom volumes (does nothing if they exist)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--volumes", type=int, default=3)
        parser.add_argument("--password", default="demo-password")

    def handle(self, *args: Any, volumes: int, password: str, **options: Any) -> None:
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

        if Project.objects.filter(slug=DEMO_SLUG).exists():
            self.stdout.write(f"demo project {DEMO_SLUG!r} already exists")
            return
        with transaction.atomic():
            project = project_create(
                user=users["manager"],
                name="Demo: CT lesions (synthetic phantoms)",
                slug=DEMO_SLUG,
                modality="CT",
                lesion_classes=[{"name": "liver lesion"}, {"name": "lung nodule"}],
                description="Synthetic CT-like phantoms generated on this machine.",
            )
            for username, role in DEMO_USERS.items():
                if role != Role.MANAGER:
                    membership_set(project=project, user=users[username], role=role)
        with tempfile.TemporaryDirectory() as tmp:
            for seed in range(volumes):
                path = Path(tmp) / f"phantom-{seed}.nii.gz"
                write_phantom(make_ct_phantom(seed=seed), path)
                with open(path, "rb") as f:
                    imported = volume_import(
                        project=project,
                        file=f,
                        filename=path.name,
                        description=f"Phantom {seed + 1}",
                    )
                warm_series_metadata(imported.series)
        self.stdout.write(f"demo project {DEMO_SLUG!r} created with {volumes} volumes")
