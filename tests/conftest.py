"""Shared fixtures: users with roles, projects, imported phantom volumes, API clients."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.cache import cache
from rest_framework.test import APIClient

from inference.engine import Phantom, make_ct_phantom, write_phantom
from projects.intake.image_import import ImportedVolume, volume_import
from projects.models import Project, Role
from projects.services import membership_set, project_create

PHANTOM_SHAPE = (24, 96, 96)


@pytest.fixture(autouse=True)
def media_root(settings: Any, tmp_path: Path) -> Path:
    """Every test writes its files into a fresh folder."""
    root = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(root), "base_url": "/media/"},
        },
    }
    return root


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    """Throttle counts and cached metrics start empty in every test (user ids repeat)."""
    cache.clear()


@pytest.fixture
def make_user(db: None) -> Callable[..., Any]:
    def make(username: str, *, can_create_projects: bool = False) -> Any:
        user = get_user_model().objects.create_user(username=username, password="pw-" + username)
        if can_create_projects:
            user.user_permissions.add(Permission.objects.get(codename="add_project"))
            user = get_user_model().objects.get(pk=user.pk)
        return user

    return make


@pytest.fixture
def make_project(make_user: Callable[..., Any]) -> Callable[..., Project]:
    def make(slug: str, **members: Any) -> Project:
        """``members``: role name -> user (the manager creates the project)."""
        manager = members.pop("manager", None) or make_user(
            f"{slug}-manager", can_create_projects=True
        )
        project = project_create(
            user=manager,
            name=slug.title(),
            slug=slug,
            modality="CT",
            lesion_classes=[{"name": "tumour"}, {"name": "node"}],
        )
        for role, user in members.items():
            membership_set(project=project, user=user, role=Role(role))
        return project

    return make


@pytest.fixture(scope="session")
def phantom() -> Phantom:
    return make_ct_phantom(seed=7, shape=PHANTOM_SHAPE, n_lesions=2)


@pytest.fixture(scope="session")
def phantom_file(phantom: Phantom, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("phantom") / "phantom.nii.gz"
    write_phantom(phantom, path)
    return path


@pytest.fixture
def import_volume(phantom_file: Path) -> Callable[[Project], ImportedVolume]:
    def do(project: Project) -> ImportedVolume:
        with open(phantom_file, "rb") as f:
            return volume_import(project=project, file=f, filename="phantom.nii.gz")

    return do


@pytest.fixture
def client_for() -> Callable[[Any], APIClient]:
    def make(user: Any) -> APIClient:
        client = APIClient()
        client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def team(make_user: Callable[..., Any]) -> dict[str, Any]:
    return {
        "manager": make_user("manager", can_create_projects=True),
        "annotator": make_user("annotator"),
        "reviewer": make_user("reviewer"),
        "outsider": make_user("outsider"),
    }


@pytest.fixture
def workspace(
    team: dict[str, Any],
    make_project: Callable[..., Project],
    import_volume: Callable[[Project], ImportedVolume],
) -> dict[str, Any]:
    """A project with a team and one imported phantom volume, its task not yet claimed."""
    project = make_project(
        "alpha", manager=team["manager"], annotator=team["annotator"], reviewer=team["reviewer"]
    )
    imported = import_volume(project)
    return {"project": project, "imported": imported, "task": imported.task, **team}


@pytest.fixture
def lesion(workspace: dict[str, Any], client_for: Callable[[Any], APIClient]) -> dict[str, Any]:
    """The workspace's task claimed by its annotator, with one lesion and no mask yet."""
    client = client_for(workspace["annotator"])
    task = client.post(f"/api/projects/{workspace['project'].slug}/tasks/next/").json()
    body = client.post(
        f"/api/tasks/{task['id']}/lesions/", {"lesion_class": "tumour"}, format="json"
    ).json()
    return {"id": body["id"], "client": client, "shape": workspace["imported"].volume.shape_zyx}
