"""The manager's dashboard in a real browser, after a whole campaign run over HTTP.

A manual baseline round and a model-assisted round (segmented by a separate Celery worker) are
annotated, timed (effort heartbeats), submitted and accepted through the API; then headless
Chromium signs in as the manager, opens the dashboard and reads back what its SVG charts drew.
The test checks the API's numbers against what the run did, and every bar and marker against the
API, and saves a full-page screenshot (test-artifacts/browser/ or $BROWSER_ARTIFACTS).

Runs against whatever DATABASE_URL and CELERY_BROKER_URL say: PostgreSQL and Redis in CI
(.ci/run), SQLite and the filesystem broker on a bare machine.
"""

import gzip
import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from inference.engine import Phantom, dice, key_slice_and_box
from tests.browser.harness import BrowserRunner
from tests.support.api import Api
from tests.support.worker import Worker

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HEARTBEAT_S = 25
# The campaign: (annotator, active seconds on the task's one lesion, what they do) per task.
# Round 0 by hand: a first contour one slice short, then the edit that completes it.
MANUAL = [("ann1", 100, "draw"), ("ann2", 200, "draw"), ("ann1", 160, "draw")]
# Round 1 with the model (the worker segments from a box): fix the key slice, redraw the whole
# lesion, or take the model's mask as it is. The last task is left waiting for review.
ASSISTED = [("ann1", 20, "fix key slice"), ("ann2", 40, "redraw"), ("ann1", 30, "keep")]
DICE_SERIES = (("Median Dice", "model_dice_median"), ("Mean Dice", "model_dice_mean"))
STATES = ("unassigned", "assigned", "submitted", "accepted", "rejected")  # the table's columns
UNREVIEWED = 1  # left submitted in round 1
QUEUED = 1  # one more volume in round 1 nobody claimed


def encode(mask: np.ndarray) -> dict[str, Any]:
    return {"mask": ("mask.gz", gzip.compress(mask.astype(np.uint8).tobytes()))}


def heartbeats(api: Api, task: int, lesion: int, seconds: int, start: datetime) -> None:
    """What the viewer sends while the annotator works: every HEARTBEAT_S (the last beat when
    the work ends) the interval since the previous beat and a brush stroke at its start."""
    for offset in range(0, seconds, HEARTBEAT_S):
        t = start + timedelta(seconds=offset)
        end = start + timedelta(seconds=min(seconds, offset + HEARTBEAT_S))
        interval = {"started_at": t.isoformat(), "ended_at": end.isoformat(), "lesion": lesion}
        stroke = {"tool": "brush", "at": t.isoformat(), "lesion": lesion}
        body = {"intervals": [interval], "interactions": [stroke]}
        api.call("POST", f"/tasks/{task}/effort/", 201, json=body)


def campaign(
    live_server: Any, worker: Worker, phantom: Phantom, phantom_file: Path
) -> dict[str, Any]:
    """Runs MANUAL and ASSISTED over HTTP; returns the dashboard's JSON after it and what the
    run itself measured: the Dice of each model mask against the lesion's final mask."""
    users = get_user_model().objects
    manager = users.create_user("mgr", password="mgr-pw")
    manager.user_permissions.add(Permission.objects.get(codename="add_project"))
    for name in ("ann1", "ann2", "rev"):
        users.create_user(name, password=f"{name}-pw")
    mgr = Api(live_server.url, "mgr", "mgr-pw")
    annotators = {name: Api(live_server.url, name, f"{name}-pw") for name in ("ann1", "ann2")}
    rev = Api(live_server.url, "rev", "rev-pw")

    tumour = [{"name": "tumour"}]
    project = {"name": "Liver", "slug": "liver", "modality": "CT", "lesion_classes": tumour}
    mgr.call("POST", "/projects/", 201, json=project)
    for name in annotators:
        member = {"username": name, "role": "annotator"}
        mgr.call("POST", "/projects/liver/members/", 201, json=member)
    mgr.call("POST", "/projects/liver/members/", 201, json={"username": "rev", "role": "reviewer"})

    def import_volumes(n: int) -> None:
        for _ in range(n):
            with open(phantom_file, "rb") as f:
                mgr.call("POST", "/projects/liver/volumes/", 201, files={"file": f})

    def claim(api: Api, round_number: int) -> tuple[int, int]:
        task = api.call("POST", "/projects/liver/tasks/next/").json()
        assert task["state"] == "assigned" and task["round"] == round_number, task
        lesion = api.call(
            "POST", f"/tasks/{task['id']}/lesions/", 201, json={"lesion_class": "tumour"}
        ).json()
        return task["id"], lesion["id"]

    def save(api: Api, lesion: int, mask: np.ndarray, parent: int | None) -> dict[str, Any]:
        data = {"encoding": "raw-gzip", "parent": "" if parent is None else parent}
        version = api.call("POST", f"/lesions/{lesion}/masks/", 201, data=data, files=encode(mask))
        return version.json()

    def submit(api: Api, task: int) -> None:
        assert api.call("POST", f"/tasks/{task}/submit/").json()["state"] == "submitted"

    clock = datetime.now(UTC) - timedelta(hours=3)

    # round 0, by hand
    import_volumes(len(MANUAL))
    submitted = []
    for k, (name, seconds, _) in enumerate(MANUAL):
        api = annotators[name]
        reference = phantom.lesion_masks[k % len(phantom.lesion_masks)]
        task, lesion = claim(api, 0)
        partial = reference.copy()
        partial[np.flatnonzero(reference.any(axis=(1, 2)))[-1]] = False
        first = save(api, lesion, partial, None)
        assert first["source"] == "human"
        save(api, lesion, reference, first["id"])
        heartbeats(api, task, lesion, seconds, clock)
        clock += timedelta(minutes=10)
        submit(api, task)
        submitted.append(task)
    for task in submitted:
        rev.call("POST", f"/tasks/{task}/review/", 201, json={"decision": "accept"})

    # round 1, with the model
    assert mgr.call("POST", "/projects/liver/rounds/", 201).json()["number"] == 1
    import_volumes(len(ASSISTED) + QUEUED)
    dices = []
    submitted.clear()
    for k, (name, seconds, action) in enumerate(ASSISTED):
        api = annotators[name]
        reference = phantom.lesion_masks[k % len(phantom.lesion_masks)]
        task, lesion = claim(api, 1)
        key_slice, box = key_slice_and_box(reference)
        job = api.call(
            "POST", f"/lesions/{lesion}/segment/", 202,
            json={"key_slice": key_slice, "box": list(box)},
        ).json()  # fmt: skip
        job = api.wait_job(job, log=worker.log)
        assert job["state"] == "succeeded", job["error"]
        raw = api.call("GET", f"/masks/{job['result']}/data/").content
        model = np.frombuffer(gzip.decompress(raw), np.uint8).reshape(reference.shape) > 0
        final = model.copy()
        if action == "fix key slice":
            final[key_slice] = reference[key_slice]
        elif action == "redraw":
            final = reference.copy()
        if action != "keep":
            assert save(api, lesion, final, job["result"])["parent"] == job["result"]
        dices.append(dice(model, final))
        heartbeats(api, task, lesion, seconds, clock)
        clock += timedelta(minutes=10)
        submit(api, task)
        submitted.append(task)
    for task in submitted[: len(submitted) - UNREVIEWED]:
        rev.call("POST", f"/tasks/{task}/review/", 201, json={"decision": "accept"})
    assert "run_segmentation_job[" in worker.output()  # the worker process segmented them
    return {"dashboard": mgr.call("GET", "/projects/liver/dashboard/").json(), "dices": dices}


def marks(chart: dict[str, Any]) -> dict[tuple[str, str], float]:
    """(category, series) -> value of every bar or line marker a chart drew."""
    drawn = chart["bars"] + [m for line in chart["lines"] for m in line["markers"]]
    out = {(m["category"], m["series"]): m["value"] for m in drawn}
    assert len(out) == len(drawn) == chart["points"], chart
    return out


def assert_drawn(chart: dict[str, Any]) -> None:
    """Bars have heights proportional to their values; markers sit higher for higher values;
    every non-zero mark is laid out in the page with a size."""
    assert chart["size"]["width"] > 200 and chart["size"]["height"] > 80, chart["size"]
    scales = [b["height"] / abs(b["value"]) for b in chart["bars"] if b["value"]]
    for scale in scales:
        assert scale == pytest.approx(scales[0], rel=0.02, abs=0.2), chart["bars"]
    for bar in chart["bars"]:
        assert (bar["drawn"]["height"] > 0) == (bar["value"] != 0), bar
    for line in chart["lines"]:
        markers = sorted(line["markers"], key=lambda m: m["value"])
        assert all(m["drawn"]["width"] > 0 for m in markers), markers
        assert [m["cy"] for m in markers] == sorted((m["cy"] for m in markers), reverse=True)


def test_dashboard_plots_the_runs_data(
    run_browser: BrowserRunner,
    worker: Worker,
    live_server: Any,
    phantom: Phantom,
    phantom_file: Path,
) -> None:
    run = campaign(live_server, worker, phantom, phantom_file)
    dash = run["dashboard"]

    # the API's numbers are the run's
    manual_s = [seconds for _, seconds, _ in MANUAL]
    assisted_s = [seconds for _, seconds, _ in ASSISTED]
    baseline = statistics.median(manual_s)
    assert (dash["cost_basis"], dash["baseline_round"]) == ("manual_round", 0)
    assert dash["baseline_cost_s"] == baseline
    r0, r1 = dash["rounds"]
    assert r0["manual"] and r0["tasks"] == r0["lesions"] == len(MANUAL)
    assert r0["median_active_s"] == baseline and r0["mean_active_s"] == statistics.fmean(manual_s)
    assert not r1["manual"] and r1["model_version"]
    assert r1["tasks"] == r1["lesions"] == len(ASSISTED)
    assert r1["median_active_s"] == statistics.median(assisted_s)
    assert r1["cost_reduction"] == pytest.approx(1 - statistics.median(assisted_s) / baseline)
    assert r1["model_dice_median"] == pytest.approx(statistics.median(run["dices"]))
    assert r1["model_dice_mean"] == pytest.approx(statistics.fmean(run["dices"]))
    assert r1["accepted_without_edits"] == pytest.approx(1 / 3)
    assert min(run["dices"]) > 0.5 and max(run["dices"]) == 1
    assert r1["model_dice_median"] != pytest.approx(r1["model_dice_mean"])
    queue = {q["round"]: q for q in dash["queue"]}
    assert (queue[0]["accepted"], queue[0]["total"]) == (len(MANUAL), len(MANUAL))
    assert queue[1] | {"round": 1} == {
        "round": 1, "unassigned": QUEUED, "assigned": 0, "submitted": UNREVIEWED,
        "accepted": len(ASSISTED) - UNREVIEWED, "rejected": 0,
        "total": len(ASSISTED) + QUEUED,
    }  # fmt: skip
    done: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in dash["throughput"]:
        done[row["annotator"]][0] += row["submitted"]
        done[row["annotator"]][1] += row["accepted"]
    assert dict(done) == {"ann1": [4, 3], "ann2": [2, 2]}  # ann1's last task awaits review

    # the browser draws the API's numbers
    record = run_browser("dashboard.mjs", username="mgr", password="mgr-pw", slug="liver")
    page = record["result"]
    assert page["url"].endswith("#/projects/liver/dashboard")
    assert page["heading"] == "Liver: dashboard"
    assert "manual round 0 (median 2 min 40 s of active time" in page["summary"]  # 160 s
    errors = [m for m in record["console"] if m["type"] == "error"]
    assert not errors and not record["failed_requests"], (errors, record["failed_requests"])
    charts = {c["title"]: c for c in page["charts"]}
    assert len(charts) == 5 and all(c["kind"] for c in charts.values()), page["charts"]
    for chart in charts.values():
        assert_drawn(chart)

    days = sorted({row["day"] for row in dash["throughput"]})
    totals = {
        (day[5:], series): sum(r[key] for r in dash["throughput"] if r["day"] == day)
        for day in days
        for series, key in (("Submitted", "submitted"), ("Accepted", "accepted"))
    }
    assert marks(charts["Tasks submitted and accepted per day"]) == totals
    per_day = {
        (day[5:], name): sum(
            r["submitted"] for r in dash["throughput"] if r["day"] == day and r["annotator"] == name
        )
        for day in days
        for name in ("ann1", "ann2")
    }
    annotator_chart = charts["Tasks submitted per day per annotator"]
    assert marks(annotator_chart) == per_day
    assert annotator_chart["legend"] == ["ann1", "ann2"]

    rounds = [r for r in dash["rounds"] if r["lesions"]]
    assert marks(charts["Median active time per lesion per round"]) == {
        (f"R{r['round']}", "Median active time"): r["median_active_s"] for r in rounds
    }
    assert marks(charts["Model versus final Dice per round"]) == pytest.approx(
        {
            (f"R{r['round']}", series): r[key]
            for r in rounds
            for series, key in DICE_SERIES
            if r[key] is not None
        }
    )
    assert marks(charts["Cost reduction per round"]) == pytest.approx(
        {(f"R{r['round']}", "Cost reduction"): r["cost_reduction"] for r in rounds}
    )
    saved = f"R1 · Cost reduction: {round(r1['cost_reduction'] * 100)}%"
    assert saved in [b["tooltip"] for b in charts["Cost reduction per round"]["bars"]]

    # the tables under the charts
    tables = page["tables"]
    assert tables["Queue depth"]["rows"] == [
        [str(q[k]) for k in ("round", *STATES, "total")] for q in dash["queue"]
    ]
    assert [row[:3] for row in tables["Annotators"]["rows"]] == [
        [a["annotator"], str(a["tasks"]), str(a["lesions"])] for a in dash["annotators"]
    ]
    assert [row[-1] for row in tables["Rounds"]["rows"]] == ["0%", "81%"]  # 1 - 30 s / 160 s

    [shot] = record["artifacts"]
    assert Path(shot).name == "dashboard.png" and Path(shot).stat().st_size > 20_000
    assert record["screenshots"][0].startswith(record["out_dir"])
