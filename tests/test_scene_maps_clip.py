"""The dense maps of a stored clip and of the scenario replaying it (scenario.from_clip) are the same maps:
training sees what a simulation of the same street would be given."""

import numpy as np

from drivesim import scenario as sc
from drivesim.data.store import open_clip, open_store, stored_clip_ids
from drivesim.render import layout_frames_from_clip
from drivesim.scene_maps import CLASSES, render_scene


def test_maps_from_a_clip_and_from_its_scenario_are_identical(synthetic_store):
    root = open_store(synthetic_store)
    categories, poly_types = list(root.attrs["categories"]), list(root.attrs["poly_types"])
    compared = 0
    for clip_id in stored_clip_ids(synthetic_store)[:2]:
        scenario = sc.from_clip(synthetic_store, clip_id)
        clip_frames = layout_frames_from_clip(open_clip(root, clip_id), categories, poly_types)
        scenario_frames = scenario.layout_frames()
        assert len(clip_frames) == len(scenario_frames)
        theirs = render_scene(scenario.rig, clip_frames)
        mine = render_scene(scenario.rig, scenario_frames)
        classes = set(np.unique(theirs.classes).tolist())
        assert {CLASSES.index(name) for name in ("road", "sidewalk", "sky")} <= classes, clip_id
        # The same class on every pixel but where a boundary passes within rounding of a pixel centre: the
        # clip's float32 world coordinates against the scenario's in the first ego frame, and its ego path
        # fitted through the logged poses (on the synthetic store: 0.015% and 0.13% of pixels, the edges
        # of 2-pixel lines and of the facade's top).
        same = theirs.classes == mine.classes
        assert same.mean() > 0.998, (clip_id, same.mean())
        both = np.isfinite(theirs.depth) & np.isfinite(mine.depth) & same
        # Depth too, up to the fitted ego path (the logged poses within 3 mm), which moves far ground near
        # the horizon the most.
        relative = np.abs(mine.depth[both] - theirs.depth[both]) / theirs.depth[both]
        assert np.median(relative) < 1e-3 and np.quantile(relative, 0.99) < 0.05, (clip_id, np.quantile(relative, 0.99))
        assert mine.look == theirs.look
        compared += 1
    assert compared == 2
