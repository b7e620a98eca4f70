"""Register a model checkpoint that lives on the GPU workers as a ModelVersion."""

import importlib.util
import zipfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models import Q

from inference.models import ModelVersion
from projects.models import Project
from projects.services import project_update

BACKENDS = {"medsam2": "inference.engine.medsam2.MedSAM2Backend"}
MIN_BYTES = 512  # an empty torch.save({"model": {}}) is already larger than this


def check_checkpoint(path: Path) -> str:
    """Raise CommandError unless ``path`` looks like a PyTorch checkpoint ``{"model": ...}``;
    returns how it was checked."""
    if not path.exists():
        raise CommandError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CommandError(f"{path} is not a file")
    size = path.stat().st_size
    if size < MIN_BYTES:
        raise CommandError(f"{path} holds {size} bytes: too small to be a model checkpoint")
    if not zipfile.is_zipfile(path):
        raise CommandError(
            f"{path} is not a PyTorch checkpoint (expected the zip format torch.save writes)"
        )
    if importlib.util.find_spec("torch") is None:
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith("/data.pkl") for name in archive.namelist()):
                raise CommandError(f"{path} is a zip file but not a PyTorch checkpoint")
        return "zip structure (torch is not installed here)"
    import torch

    try:
        content = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises many types for foreign or corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CommandError(f"{path} cannot be loaded as a checkpoint: {first}") from exc
    if not isinstance(content, dict) or "model" not in content:
        keys = sorted(map(str, content)) if isinstance(content, dict) else type(content).__name__
        raise CommandError(f'{path} has no "model" entry (found {keys})')
    weights = content["model"]
    if not isinstance(weights, dict) or not weights:
        raise CommandError(f'{path}: its "model" entry is not a non-empty state dict')
    tensors = sum(1 for value in weights.values() if isinstance(value, torch.Tensor))
    return f"torch.load: {tensors} tensors"


class Command(BaseCommand):
    help = (
        "Register a checkpoint file that the GPU workers can read (the same absolute path on "
        "every worker) as a model version, site-wide or for one project, and optionally make it "
        "the project's active model (the model that pre-annotates its next rounds)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, metavar="PATH")
        parser.add_argument("--name", required=True)
        parser.add_argument("--project", metavar="SLUG", help="the project it belongs to")
        parser.add_argument(
            "--backend",
            default="medsam2",
            help="medsam2 (default) or the dotted path of a backend class",
        )
        parser.add_argument(
            "--activate",
            action="store_true",
            help="make it the project's active model (needs --project)",
        )

    def handle(self, *args: Any, path: Path, name: str, **options: Any) -> None:
        backend = BACKENDS.get(options["backend"], options["backend"])
        if "." not in backend:
            raise CommandError(
                f"unknown backend {options['backend']!r}: use medsam2 or a dotted class path"
            )
        if not name.strip():
            raise CommandError("--name must not be empty")
        project = None
        if options["project"]:
            project = Project.objects.filter(slug=options["project"]).first()
            if project is None:
                raise CommandError(f"no project with the slug {options['project']!r}")
        elif options["activate"]:
            raise CommandError("--activate needs --project")
        path = path.expanduser().resolve()
        checked = check_checkpoint(path)
        with transaction.atomic():
            clash = ModelVersion.objects.filter(name=name).filter(
                Q(project=project) | Q(project__isnull=True)
            )
            if clash.exists():
                raise CommandError(f"a model version named {name!r} exists already")
            version = ModelVersion.objects.create(
                project=project, name=name, backend=backend, checkpoint=str(path)
            )
            if project is not None and options["activate"]:
                project_update(project=project, active_model_version=version)
        where = f"project {project.slug!r}" if project else "every project"
        active = " (now its active model)" if options["activate"] else ""
        self.stdout.write(
            f"registered model version {version.pk} {name!r}: {backend} with {path} "
            f"[{checked}], for {where}{active}"
        )
