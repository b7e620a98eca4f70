"""Project model methods."""

from typing import Any

import pytest

from projects.models import Project


@pytest.mark.parametrize(
    ("presets", "window"),
    [
        ([], None),
        (
            [{"name": "soft", "center": 40, "width": 400}, {"name": "lung", "center": -600}],
            (40, 400),
        ),
        # rows saved before presets were checked: the first usable one counts
        ([{"name": "broken"}, {"name": "bone", "center": "300", "width": 1500}], (300, 1500)),
        ([{"name": "w", "center": 0, "width": 0}, {"name": "v", "center": 1, "width": 2}], (1, 2)),
        ([{"name": "inf", "center": float("inf"), "width": 10}], None),
        ([{"name": "null", "center": None, "width": 10}], None),
    ],
)
def test_the_window_preset(presets: list[dict[str, Any]], window: Any) -> None:
    assert Project(window_presets=presets).window_preset() == window
