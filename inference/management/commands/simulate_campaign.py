"""Simulate a whole annotation campaign on a data folder of image / reference-mask pairs."""

import argparse
import json
import platform
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.engine import BackendUnavailable
from inference.evaluation import load_pairs
from inference.simulated_annotator import ORDERS, CostModel, PromptPolicy
from inference.simulation import (
    campaign_report,
    result_line,
    run_campaign,
    training_for,
    write_report,
)
from inference.simulation_plot import plot_costs


def cost_model(config_file: Path | None, overrides: dict[str, float | None]) -> CostModel:
    """Defaults, then the JSON file's values, then the command-line flags."""
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            loaded = json.loads(config_file.read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read the cost model {config_file}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise CommandError(f"{config_file}: the cost model must be a JSON object")
        values.update(loaded)
    values.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return CostModel.from_mapping(values)
    except (TypeError, ValueError) as exc:
        raise CommandError(str(exc)) from exc


class Command(BaseCommand):
    help = (
        "Run a simulated annotation campaign on DIR/pairs.json: the lesions split by patient "
        "into N rounds; each lesion boxed on its key slice and pre-segmented by the backend, "
        "then finished by two simulated annotators: one re-contours every slice with a 2D "
        "Dice under 0.9; the other first marks the slice range, corrects up to N wrong slices "
        "by a box propagated from them, then re-contours what is still wrong. The model is "
        "retrained on the corrected lesions between rounds. Writes OUT/report.json and "
        "OUT/cost_per_lesion.png and ends with a RESULT line (its cost reductions are the "
        "prompting annotator's)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data", type=Path, required=True, help="folder with pairs.json")
        parser.add_argument("--rounds", type=int, default=3)
        parser.add_argument("--report", type=Path, required=True, help="output folder")
        parser.add_argument("--seed", type=int, default=0, help="the split's and training's")
        parser.add_argument("--min-voxels", type=int, default=100, help="smallest lesion")
        parser.add_argument(
            "--backend",
            default="default",
            help="alias or dotted path for inference.engine.load_backend (default: default)",
        )
        parser.add_argument(
            "--max-prompts",
            type=int,
            default=PromptPolicy.max_prompts,
            help="corrective boxes (and eraser strokes) per lesion before the brush (default 3)",
        )
        parser.add_argument(
            "--slice-range",
            action=argparse.BooleanOptionalAction,
            default=PromptPolicy.slice_range,
            help="the prompting annotator marks the lesion's first and last slice first",
        )
        parser.add_argument(
            "--next-slice",
            choices=ORDERS,
            default=PromptPolicy.order,
            help="which wrong slice to correct next: worst 2D Dice (default), nearest the key "
            "slice, or outermost",
        )
        parser.add_argument(
            "--cost-config", type=Path, help="JSON object of cost model fields (see below)"
        )
        defaults = CostModel()
        for field in fields(CostModel):
            parser.add_argument(
                f"--{field.name.replace('_', '-')}",
                type=float,
                dest=field.name,
                help=f"cost model: overrides the file (default {getattr(defaults, field.name)})",
            )

    def handle(self, *args: Any, **options: Any) -> None:
        data: Path = options["data"]
        rounds: int = options["rounds"]
        out: Path = options["report"]
        if rounds < 1:
            raise CommandError("--rounds must be >= 1")
        try:
            policy = PromptPolicy(
                max_prompts=options["max_prompts"],
                slice_range=options["slice_range"],
                order=options["next_slice"],
            )
        except ValueError as exc:
            raise CommandError(f"--max-prompts: {exc}") from exc
        cost = cost_model(
            options["cost_config"], {field.name: options[field.name] for field in fields(CostModel)}
        )
        pairs = load_pairs(data)
        if pairs is None:
            raise CommandError(
                f"no pairs.json in {data}: --data must be a folder laid out like ../shared/data"
            )
        self.stdout.write(f"cost model: {asdict(cost)}")
        try:
            campaign = run_campaign(
                pairs,
                data,
                rounds=rounds,
                cost=cost,
                policy=policy,
                backend=options["backend"],
                seed=options["seed"],
                min_voxels=options["min_voxels"],
                log=self.stdout.write,
            )
        except BackendUnavailable as exc:
            raise CommandError(f"--backend: {exc}") from exc
        except ValueError as exc:  # too few patients for the rounds
            raise CommandError(str(exc)) from exc
        config = {
            "data": str(data.resolve()),
            "rounds": rounds,
            "seed": options["seed"],
            "min_voxels": options["min_voxels"],
            "backend": options["backend"],
            "backend_describe": campaign.backend,
            "training_available": training_for(options["backend"]) is not None,
            "prompt_policy": asdict(policy),
            "machine": f"{platform.machine()}, Python {platform.python_version()}",
        }
        report = campaign_report(campaign, config=config, cost=cost)
        out.mkdir(parents=True, exist_ok=True)
        write_report(report, out / "report.json")
        plot_costs(report, out / "cost_per_lesion.png")
        self.stdout.write(f"wrote {out / 'report.json'} and {out / 'cost_per_lesion.png'}")
        self.stdout.write(f"total {campaign.seconds:.0f} s")
        self.stdout.write(result_line(campaign))
