"""The paint baseline: each class's mean training colour, shaded by depth, painted where its maps say."""

import numpy as np
import pytest

from drivesim.errors import DataError
from drivesim.paint_baseline import Palette, _solve, fit_palette, paint
from drivesim.scene_maps import CLASSES, SceneMaps


def test_the_fit_recovers_a_colour_that_is_a_line_in_depth():
    rng = np.random.default_rng(0)
    sums = np.zeros((len(CLASSES), 5, 3))
    depth = rng.uniform(0, 1, 500)
    colour = np.stack([100 + 50 * depth, 80 - 20 * depth, np.full_like(depth, 30)], axis=1)
    road = CLASSES.index("road")
    for column, values in enumerate((np.ones_like(depth), depth, depth**2)):
        sums[road, column, 0] = values.sum()
    sums[road, 3] = colour.sum(axis=0)
    sums[road, 4] = (depth[:, None] * colour).sum(axis=0)
    palette = _solve(sums)
    np.testing.assert_allclose(palette.base[road], [100, 80, 30], atol=1e-6)
    np.testing.assert_allclose(palette.slope[road], [50, -20, 0], atol=1e-6)
    assert palette.pixels[road] == 500 and palette.pixels[CLASSES.index("sky")] == 0
    np.testing.assert_allclose(palette.base[CLASSES.index("sky")], colour.mean(axis=0))  # unseen: the mean of all


def test_paint_colours_each_class_at_its_depth(tmp_path):
    count = len(CLASSES)
    palette = Palette(np.tile([[10.0, 20.0, 30.0]], (count, 1)), np.tile([[100.0, 0.0, 0.0]], (count, 1)),
                      np.ones(count, np.int64))
    classes = np.zeros((1, 1, 2, 2), np.uint8)
    depth = np.array([[[[0.0, 50.0], [100.0, np.inf]]]], np.float32)
    maps = SceneMaps(classes, depth, np.zeros_like(classes, np.int32), np.zeros_like(classes, bool),
                     np.zeros_like(classes, bool), ("day", "clear"))
    image = paint(maps, palette)
    assert image.dtype == np.uint8
    assert image[0, 0, :, :, 0].tolist() == [[10, 60], [110, 110]]  # sky (inf) shades as the far limit
    palette.save(tmp_path / "palette.json")
    again = Palette.load(tmp_path / "palette.json")
    np.testing.assert_array_equal(again.base, palette.base)
    (tmp_path / "bad.json").write_text("{\"classes\": [\"sky\"]}")
    with pytest.raises(DataError, match="bad.json"):
        Palette.load(tmp_path / "bad.json")


def test_fit_on_a_store_gives_road_darker_than_sky(synthetic_store):
    palette = fit_palette(synthetic_store, (96, 64), split=None, every=2, progress=False)
    road, sky = CLASSES.index("road"), CLASSES.index("sky")
    assert palette.pixels[road] > 0 and palette.pixels[sky] > 0
    assert palette.base[road].mean() < palette.base[sky].mean() + palette.slope[sky].mean()
