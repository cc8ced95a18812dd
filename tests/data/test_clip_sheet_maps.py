"""`drivesim store sheet --maps`: every camera's frame beside the dense scene map of that frame."""

from __future__ import annotations

import numpy as np
from PIL import Image

from drivesim.cli import main
from drivesim.data import store
from drivesim.data.clip_sheet import clip_maps, maps_legend
from drivesim.scene_maps import CLASS_COLOURS, picture

WIDTH, HEIGHT, FRAMES = 96, 64, 2  # the synthetic_store's image size; frames drawn
LABEL = 22  # rows of a tile its label (12 px text, 2 px stroke, at y 3) may cover


def test_sheet_with_maps_puts_each_frame_beside_its_scene_map(synthetic_store, tmp_path, capsys):
    plain, with_maps = tmp_path / "plain.png", tmp_path / "maps.png"
    clip_id = sorted(store.open_store(synthetic_store).attrs["clips"])[0]
    common = ["store", "sheet", str(synthetic_store), "--clip", clip_id, "--frames", str(FRAMES)]
    assert main([*common, "--out", str(plain)]) == 0
    assert main([*common, "--out", str(with_maps), "--maps"]) == 0
    assert f"clip sheet: {with_maps}" in capsys.readouterr().out
    plain_sheet = np.asarray(Image.open(plain).convert("RGB"))
    sheet = np.asarray(Image.open(with_maps).convert("RGB"))
    views = plain_sheet.shape[1] // WIDTH
    assert plain_sheet.shape == (FRAMES * HEIGHT + 22, views * WIDTH, 3)

    # Cameras are rows and frames columns, each frame followed by its map (two tiles per frame); the legend
    # runs below.
    assert sheet.shape[1] == 2 * FRAMES * WIDTH
    legend = maps_legend(sheet.shape[1]).height
    header = sheet.shape[0] - views * HEIGHT - legend
    assert 16 <= header <= 60

    root = store.open_store(synthetic_store)
    clip = store.read_clip(root, clip_id)
    chosen = [0, len(clip["frames"]) - 1]  # FRAMES evenly spaced
    pictures = picture(clip_maps(root, clip_id, clip, chosen, list(root.attrs["categories"]),
                                 list(root.attrs["poly_types"])))
    assert pictures.shape == (views, FRAMES, HEIGHT, WIDTH, 3)
    sky = np.array(CLASS_COLOURS["sky"], np.uint8)
    skies = 0
    for v in range(views):
        for column in range(FRAMES):
            top = header + v * HEIGHT
            frame = sheet[top:top + HEIGHT, 2 * column * WIDTH:(2 * column + 1) * WIDTH]
            # The same frame tile (projected boxes, lines, label) as the plain sheet draws.
            same = plain_sheet[22 + column * HEIGHT:22 + (column + 1) * HEIGHT, v * WIDTH:(v + 1) * WIDTH]
            np.testing.assert_array_equal(frame, same)
            # The map of that camera and frame (scene_maps.picture), below its label.
            scene_map = sheet[top + LABEL:top + HEIGHT, (2 * column + 1) * WIDTH:(2 * column + 2) * WIDTH]
            np.testing.assert_array_equal(scene_map, pictures[v, column, LABEL:])
            colours = np.unique(scene_map.reshape(-1, 3), axis=0)
            assert len(colours) > 3, f"camera {v}, frame {column}: the map is (nearly) one colour"
            assert not np.array_equal(scene_map, frame[LABEL:])
            skies += int((scene_map == sky).all(axis=-1).sum())
    assert skies > 0, "no camera's map shows sky"


def test_maps_legend_wraps_to_the_width_it_is_given():
    narrow, wide = maps_legend(200), maps_legend(2000)
    assert narrow.width == 200 and wide.width == 2000
    assert narrow.height > wide.height
    pixels = np.asarray(narrow)
    assert (pixels == np.array(CLASS_COLOURS["pedestrian"], np.uint8)).all(axis=-1).any()
