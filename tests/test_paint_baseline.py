"""The paint baseline: each class's mean training colour, shaded by depth, painted where its maps say."""

import numpy as np
import pytest

from drivesim.errors import DataError
from drivesim.paint_baseline import Palette, _solve, fit_palette, paint
from drivesim.render import TIMES_OF_DAY
from drivesim.scene_maps import CLASSES, SceneMaps

LOOKS = len(TIMES_OF_DAY)


def test_the_fit_recovers_a_colour_that_is_a_line_in_depth():
    rng = np.random.default_rng(0)
    sums = np.zeros((LOOKS, len(CLASSES), 5, 3))
    depth = rng.uniform(0, 1, 500)
    colour = np.stack([100 + 50 * depth, 80 - 20 * depth, np.full_like(depth, 30)], axis=1)
    road, day, night = CLASSES.index("road"), TIMES_OF_DAY.index("day"), TIMES_OF_DAY.index("night")
    for column, values in enumerate((np.ones_like(depth), depth, depth**2)):
        sums[day, road, column, 0] = values.sum()
    sums[day, road, 3] = colour.sum(axis=0)
    sums[day, road, 4] = (depth[:, None] * colour).sum(axis=0)
    palette = _solve(sums)
    np.testing.assert_allclose(palette.base[day, road], [100, 80, 30], atol=1e-6)
    np.testing.assert_allclose(palette.slope[day, road], [50, -20, 0], atol=1e-6)
    assert palette.pixels[day, road] == 500 and palette.pixels[day, CLASSES.index("sky")] == 0
    # a class no frame showed: the mean of all; a time of day that never showed road: road at all times
    np.testing.assert_allclose(palette.base[day, CLASSES.index("sky")], colour.mean(axis=0))
    np.testing.assert_allclose(palette.base[night, road], [100, 80, 30], atol=1e-6)


def test_paint_colours_each_class_at_its_depth(tmp_path):
    count = len(CLASSES)
    palette = Palette(np.tile([[10.0, 20.0, 30.0]], (LOOKS, count, 1)), np.tile([[100.0, 0.0, 0.0]], (LOOKS, count, 1)),
                      np.ones((LOOKS, count), np.int64))
    palette.base[TIMES_OF_DAY.index("night")] = 0.0  # night paints darker
    classes = np.zeros((1, 1, 2, 2), np.uint8)
    depth = np.array([[[[0.0, 50.0], [100.0, np.inf]]]], np.float32)
    maps = SceneMaps(classes, depth, np.zeros_like(classes, np.int32), np.zeros_like(classes, bool),
                     np.zeros_like(classes, bool), ("day", "clear"))
    image = paint(maps, palette)
    assert image.dtype == np.uint8
    assert image[0, 0, :, :, 0].tolist() == [[10, 60], [110, 110]]  # sky (inf) shades as the far limit
    night = paint(SceneMaps(classes, depth, maps.instance, maps.box_front, maps.lane, ("night", "rain")), palette)
    assert night[0, 0, :, :, 1].tolist() == [[0, 0], [0, 0]]
    palette.save(tmp_path / "palette.json")
    again = Palette.load(tmp_path / "palette.json")
    np.testing.assert_array_equal(again.base, palette.base)
    (tmp_path / "bad.json").write_text("{\"classes\": [\"sky\"]}")
    with pytest.raises(DataError, match="bad.json"):
        Palette.load(tmp_path / "bad.json")


def test_fit_on_a_store_gives_road_darker_than_sky(synthetic_store):
    palette = fit_palette(synthetic_store, (96, 64), split=None, every=2, progress=False)
    road, sky = CLASSES.index("road"), CLASSES.index("sky")
    seen = palette.pixels.sum(axis=1) > 0  # the times of day the store shows
    assert seen.any() and palette.pixels[seen][:, road].all() and palette.pixels[seen][:, sky].all()
    assert palette.base.shape == (LOOKS, len(CLASSES), 3)
