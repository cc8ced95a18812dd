"""The classes the detector knows: drivesim's super-categories (render.PALETTE), each store category mapped to
one, and the nuscenes-devkit detection name each is scored as."""

from __future__ import annotations

from drivesim.render import super_category

# The palette's classes less "other" (animals, debris, bicycle racks: nothing the synthetic logs draw).
CLASSES = ("car", "truck", "bus", "bicycle", "pedestrian", "barrier")

# The devkit's detection name each class is scored as. drivesim merges motorcycles into "bicycle" and
# traffic cones into "barrier" (as its layout maps do), so the devkit sees them under those names; trailers,
# construction vehicles and ambulances are trucks. Per-class APs are therefore not the official ones.
DEVKIT_NAMES = {"car": "car", "truck": "truck", "bus": "bus", "bicycle": "bicycle", "pedestrian": "pedestrian",
                "barrier": "barrier"}

# Two detections of one class closer than this in bird's eye view (metres) are one object seen by two
# cameras: a little under the smallest centre distance two such objects keep side by side.
MERGE_RADIUS = {"car": 1.5, "truck": 2.0, "bus": 2.5, "bicycle": 0.6, "pedestrian": 0.4, "barrier": 0.4}


def class_indices(categories: list[str]) -> list[int]:
    """Per store category name (the store's root `categories`), its index in CLASSES, or -1 (not detected)."""
    classes = {name: index for index, name in enumerate(CLASSES)}
    return [classes.get(super_category(name), -1) for name in categories]
