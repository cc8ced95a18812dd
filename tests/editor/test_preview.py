"""The editor's layout preview: every camera's layout maps at one time, coloured and tiled like the car."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest

from drivesim.editor.preview import (BACK_SHADE, BACKGROUND, BLANK, EDGE_COLOUR, LABEL_HEIGHT, LANE_COLOUR,
                                     SEPARATOR, SEPARATOR_COLOUR, colorize, layout_preview, preview_png,
                                     preview_size, tile_origin)
from drivesim.render import LAYOUT_CHANNELS, PALETTE
from drivesim.scenario import from_dict, load, move_agent

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
WIDTH = 128  # tiles 128 x 72 for the 16:9 rigs: small and quick, big enough to see a car
CAR = tuple(round(255 * c) for c in PALETTE["car"])
CAR_BACK = tuple(round(255 * c * BACK_SHADE) for c in PALETTE["car"])


def car_ahead_document(rig: str = "nuscenes") -> dict:
    """The ego at rest-ish on a straight road, one car 15 m directly ahead in its lane, nothing behind."""
    return {
        "name": "car_ahead", "prompt": "a car ahead", "rig": rig, "fps": 12, "duration": 1,
        "ego": {"waypoints": [{"t": 0, "x": 0, "y": 0}, {"t": 1, "x": 5, "y": 0}]},
        "agents": [{"id": "lead", "category": "vehicle.car", "size": [1.85, 4.5, 1.55],
                    "waypoints": [{"t": 0, "x": 15, "y": 0}, {"t": 1, "x": 20, "y": 0}]}],
        "road": {"lanes": [[[-50, 0], [150, 0]]], "road_edges": [[[-50, -1.75], [150, -1.75]],
                                                               [[-50, 5.25], [150, 5.25]]]},
    }


@pytest.fixture(scope="module")
def car_ahead():
    return from_dict(car_ahead_document(), source="test scenario")


@pytest.fixture(scope="module")
def car_ahead_image(car_ahead):
    return layout_preview(car_ahead, 0.5, width=WIDTH)


def tile(image: np.ndarray, row: int, column: int, size=(WIDTH, 72)) -> np.ndarray:
    """One camera's tile of a preview, below its name strip."""
    top, left = tile_origin(row, column, size)
    return image[top + LABEL_HEIGHT:top + size[1], left:left + size[0]]


def count(image: np.ndarray, colour) -> int:
    return int((image == np.array(colour, np.uint8)).all(axis=-1).sum())


def blank_maps(height: int = 8, width: int = 10) -> np.ndarray:
    return np.zeros((len(LAYOUT_CHANNELS), height, width), np.float32)


def test_the_preview_is_tiled_like_the_car(car_ahead, car_ahead_image):
    assert preview_size(car_ahead, WIDTH) == (WIDTH, 72)
    assert car_ahead_image.dtype == np.uint8
    assert car_ahead_image.shape == (2 * 72 + SEPARATOR, 3 * WIDTH + 2 * SEPARATOR, 3)  # front row over back row
    separator_rows = car_ahead_image[72:72 + SEPARATOR]
    separator_columns = car_ahead_image[:, WIDTH:WIDTH + SEPARATOR]
    assert (separator_rows == SEPARATOR_COLOUR).all() and (separator_columns == SEPARATOR_COLOUR).all()


def test_a_front_camera_rig_is_one_row():
    scenario = from_dict(car_ahead_document(rig="front3"), source="test scenario")
    image = layout_preview(scenario, 0.0, width=WIDTH)
    assert image.shape == (72, 3 * WIDTH + 2 * SEPARATOR, 3)
    assert count(tile(image, 0, 1), CAR) + count(tile(image, 0, 1), CAR_BACK) > 0


def test_a_car_directly_ahead_shows_in_the_front_camera_only(car_ahead_image):
    front, back = tile(car_ahead_image, 0, 1), tile(car_ahead_image, 1, 1)
    # From behind the car the ego sees its back half: the shaded colour; its front half shows over the roof.
    assert count(front, CAR_BACK) > 20
    assert count(back, CAR) + count(back, CAR_BACK) == 0
    # The road shows everywhere: lane line and road edges in front and behind.
    for view in (front, back):
        assert count(view, LANE_COLOUR) > 0 and count(view, EDGE_COLOUR) > 0


def test_every_tile_is_labelled_with_its_camera(car_ahead, car_ahead_image):
    for row in range(2):
        for column in range(3):
            top, left = tile_origin(row, column, (WIDTH, 72))
            strip = car_ahead_image[top:top + LABEL_HEIGHT, left:left + 60]
            assert ((strip > 200).all(axis=-1)).sum() > 10  # the text, white but anti-aliased
            assert count(strip, (0, 0, 0)) > 100       # the dark strip behind it


def test_moving_the_agent_changes_the_preview(car_ahead, car_ahead_image):
    nearer = layout_preview(move_agent(car_ahead, "lead", dx=-5.0), 0.5, width=WIDTH)
    assert nearer.shape == car_ahead_image.shape and not np.array_equal(nearer, car_ahead_image)
    # Nearer means bigger in the front camera.
    assert count(tile(nearer, 0, 1), CAR_BACK) > count(tile(car_ahead_image, 0, 1), CAR_BACK)


def test_the_preview_is_deterministic_and_times_are_clamped(car_ahead, car_ahead_image):
    assert np.array_equal(layout_preview(car_ahead, 0.5, width=WIDTH), car_ahead_image)
    assert np.array_equal(layout_preview(car_ahead, 7.0, width=WIDTH), layout_preview(car_ahead, 1.0, width=WIDTH))


def test_preview_png_decodes_to_the_preview(car_ahead, car_ahead_image):
    from PIL import Image

    data = preview_png(car_ahead, 0.5, width=WIDTH)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), car_ahead_image)


def test_colorize_of_nothing_is_the_uniform_background():
    image = colorize(blank_maps())
    assert image.shape == (8, 10, 3) and image.dtype == np.uint8
    assert (image == BACKGROUND).all()


def test_colorize_paints_boxes_in_their_palette_colour_darker_at_the_back():
    maps = blank_maps()
    maps[0:3, 2:6, 2:8] = np.array(PALETTE["car"], np.float32)[:, None, None]
    maps[LAYOUT_CHANNELS.index("box_front"), 2:6, 5:8] = 1.0
    maps[LAYOUT_CHANNELS.index("depth"), 2:6, 2:8] = 0.2
    image = colorize(maps)
    assert (image[2:6, 5:8] == CAR).all()
    assert (image[2:6, 2:5] == CAR_BACK).all()
    outside = np.ones((8, 10), bool)
    outside[2:6, 2:8] = False
    assert (image[outside] == BACKGROUND).all()


def test_colorize_paints_lines_over_boxes():
    maps = blank_maps()
    maps[0:3, :, :] = np.array(PALETTE["truck"], np.float32)[:, None, None]
    maps[LAYOUT_CHANNELS.index("lane"), 1] = 1.0
    maps[LAYOUT_CHANNELS.index("road_edge"), 3] = 1.0
    image = colorize(maps)
    assert (image[1] == LANE_COLOUR).all() and (image[3] == EDGE_COLOUR).all()
    assert (image[0] == [round(255 * c * BACK_SHADE) for c in PALETTE["truck"]]).all()


def test_colorize_colours_are_distinct():
    colours = {BACKGROUND, LANE_COLOUR, EDGE_COLOUR, BLANK, SEPARATOR_COLOUR}
    for rgb in PALETTE.values():
        colours.add(tuple(round(255 * c) for c in rgb))
        colours.add(tuple(round(255 * c * BACK_SHADE) for c in rgb))
    assert len(colours) == 5 + 2 * len(PALETTE)


def test_colorize_rejects_maps_of_another_shape():
    with pytest.raises(ValueError, match="channels"):
        colorize(np.zeros((3, 8, 10), np.float32))


def test_a_shipped_scenario_previews_six_cameras_in_under_a_second():
    scenario = load(SCENARIOS / "cut_in.yaml")
    layout_preview(scenario, 2.0)  # the first call imports the ray caster
    start = time.perf_counter()
    image = layout_preview(scenario, 2.0)
    elapsed = time.perf_counter() - start
    assert image.shape == (2 * 144 + SEPARATOR, 3 * 256 + 2 * SEPARATOR, 3)
    assert elapsed < 1.0, f"{elapsed:.2f} s"
    # At t = 2 the cutter is ahead on the left and the far lead straight ahead: cars in CAM_FRONT.
    front = tile(image, 0, 1, (256, 144))
    assert count(front, CAR) + count(front, CAR_BACK) > 0
