"""Scenario files: a strict reader of YAML documents (every error names the file and the field), load and save."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import yaml

from drivesim.errors import ScenarioError
from drivesim.render import BUILDING_SETBACK, SIDEWALK_WIDTH, TIMES_OF_DAY, WEATHERS
from drivesim.rigs import show_value, rig_document, rig_names
from drivesim.scenario.schema import CATEGORIES, LANE_LINE_TYPES, Agent, Road, Scenario, StartFrames
from drivesim.scenario.trajectory import Trajectory
from drivesim.scenario.validate import validate

MAX_BYTES = 10 * 1024 * 1024
# Bounds that keep a hostile file (YAML aliases repeat a list for free) from costing minutes or gigabytes.
MAX_ITEMS = 1_000_000


_TOP = {"name", "prompt", "rig", "fps", "duration", "seed", "time_of_day", "weather", "start_frames", "ego", "agents",
        "road"}
_ROAD = {"lanes", "road_edges", "lane_lines", "crosswalks", "stop_lines", "sidewalk_width", "building_setback"}
_TOP_REQUIRED = ("prompt", "rig", "fps", "duration", "ego")


class _Reader:
    """Strict reader of a scenario document: every error names the source and the field."""

    def __init__(self, source: str):
        self.source = source
        self.items = 0  # entries of all lists read so far: aliases make huge documents from small files

    def error(self, where: str, problem: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {where}: {problem}" if where else f"{self.source}: {problem}")

    def mapping(self, value, where: str, allowed: set, required=()) -> dict:
        if not isinstance(value, dict):  # the whole document (where == ""): its type, not a quote of the file
            raise self.error(where, f"must be a mapping, got {show_value(value) if where else type(value).__name__}")
        extra = sorted(str(key) for key in value if key not in allowed)
        if extra:
            raise self.error(where, f"has unknown key(s) {', '.join(extra)}; allowed: {', '.join(sorted(allowed))}")
        missing = [key for key in required if key not in value]
        if missing:
            raise self.error(where, f"is missing {', '.join(missing)}")
        return value

    def sequence(self, value, where: str, minimum: int = 0) -> list:
        if not isinstance(value, list):
            raise self.error(where, f"must be a list, got {show_value(value)}")
        self.items += len(value)
        if self.items > MAX_ITEMS:
            raise self.error(where, f"makes the scenario too large: more than {MAX_ITEMS} list entries in all")
        if len(value) < minimum:
            raise self.error(where, f"needs at least {minimum} entries, got {len(value)}")
        return value

    def number(self, value, where: str) -> float:
        try:
            number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        except OverflowError:  # YAML integers are unbounded
            number = math.inf
        if number is None:
            raise self.error(where, f"must be a number, got {show_value(value)}")
        if not math.isfinite(number):
            raise self.error(where, f"must be a finite number, got {show_value(value)}")
        return number

    def text(self, value, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(where, f"must be a non-empty text, got {show_value(value)}")
        return value

    def integer(self, value, where: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.error(where, f"must be an integer >= 0, got {show_value(value)}")
        return value

    def choice(self, value, where: str, allowed) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise self.error(where, f"{show_value(value)} must be one of {', '.join(allowed)}")
        return value

    def points(self, value, where: str, minimum: int = 2) -> np.ndarray:
        rows = []
        for i, point in enumerate(self.sequence(value, where, minimum=minimum)):
            if not isinstance(point, list) or len(point) not in (2, 3):
                raise self.error(f"{where}[{i}]", f"must be [x, y] or [x, y, z], got {show_value(point)}")
            rows.append([self.number(c, f"{where}[{i}]") for c in point] + [0.0] * (3 - len(point)))
        return np.array(rows)

    def trajectory(self, value: dict, where: str) -> Trajectory:
        """`waypoints: [{t, x, y, [z], [yaw]}]` or `poses: [{t, translation, rotation}]`."""
        if ("waypoints" in value) == ("poses" in value):
            raise self.error(where, "needs either waypoints (t, x, y[, z][, yaw]) or poses (t, translation, rotation)")
        if "waypoints" in value:
            items = self.sequence(value["waypoints"], f"{where}.waypoints", minimum=2)
            rows = [self.mapping(item, f"{where}.waypoints[{i}]", {"t", "x", "y", "z", "yaw"}, ("t", "x", "y"))
                    for i, item in enumerate(items)]
            with_yaw = ["yaw" in row for row in rows]
            if any(with_yaw) and not all(with_yaw):
                index = with_yaw.index(not with_yaw[0])
                raise self.error(f"{where}.waypoints[{index}]", "give yaw on every waypoint or on none")
            numbers = {key: [self.number(row.get(key, 0.0), f"{where}.waypoints[{i}].{key}")
                             for i, row in enumerate(rows)] for key in ("t", "x", "y", "z", "yaw")}
            return Trajectory(numbers["t"], np.column_stack([numbers["x"], numbers["y"], numbers["z"]]),
                              numbers["yaw"] if all(with_yaw) else None)
        items = self.sequence(value["poses"], f"{where}.poses", minimum=2)
        times, translations, rotations = [], [], []
        for i, item in enumerate(items):
            at = f"{where}.poses[{i}]"
            row = self.mapping(item, at, {"t", "translation", "rotation"}, ("t", "translation", "rotation"))
            times.append(self.number(row["t"], f"{at}.t"))
            for key, length, out in (("translation", 3, translations), ("rotation", 4, rotations)):
                if not isinstance(row[key], list) or len(row[key]) != length:
                    raise self.error(f"{at}.{key}", f"must be a list of {length} numbers, got {show_value(row[key])}")
                out.append([self.number(c, f"{at}.{key}") for c in row[key]])
        return Trajectory(times, translations, rotations=rotations)

    def agent(self, value, where: str) -> Agent:
        row = self.mapping(value, where, {"id", "category", "size", "waypoints", "parked"}, ("id", "category", "size"))
        agent_id = row["id"]
        if isinstance(agent_id, int) and not isinstance(agent_id, bool):
            agent_id = str(agent_id)
        agent_id = self.text(agent_id, f"{where}.id")
        category = row["category"]
        if not isinstance(category, str) or category not in CATEGORIES:
            raise self.error(f"{where}.category", f"unknown category {show_value(category)}; nuScenes categories: "
                                                  f"{', '.join(CATEGORIES)}")
        if not isinstance(row["size"], list) or len(row["size"]) != 3:
            raise self.error(f"{where}.size",
                             f"must be [width, length, height] in metres, got {show_value(row['size'])}")
        size = tuple(self.number(c, f"{where}.size") for c in row["size"])
        if ("waypoints" in row) == ("parked" in row):
            raise self.error(where, "needs either waypoints (a timed trajectory) or parked: {x, y[, z], yaw}")
        if "parked" in row:
            pose = self.mapping(row["parked"], f"{where}.parked", {"x", "y", "z", "yaw"}, ("x", "y", "yaw"))
            numbers = [self.number(pose.get(k, 0.0), f"{where}.parked.{k}") for k in ("x", "y", "z", "yaw")]
            return Agent(agent_id, category, size, Trajectory([0.0], [numbers[:3]], [numbers[3]]), parked=True)
        return Agent(agent_id, category, size, self.trajectory(row, where))

    def scenario(self, document, base_dir: Path | None) -> Scenario:
        document = self.mapping(document, "", _TOP, _TOP_REQUIRED)
        rig = document["rig"]
        if not (isinstance(rig, dict) or (isinstance(rig, str) and rig.strip())):
            raise self.error("rig", f"must be a views/ rig name or an inline rig, got {show_value(rig)}")
        fps, duration = self.number(document["fps"], "fps"), self.number(document["duration"], "duration")
        start = None
        if document.get("start_frames") is not None:
            value = self.mapping(document["start_frames"], "start_frames", {"store", "clip", "frame"},
                                 ("store", "clip"))
            start = StartFrames(self.text(value["store"], "start_frames.store"),
                                self.text(value["clip"], "start_frames.clip"),
                                self.integer(value.get("frame", 0), "start_frames.frame"))
        ego = self.trajectory(self.mapping(document["ego"], "ego", {"waypoints", "poses"}), "ego")
        agents = tuple(self.agent(value, f"agents[{i}]")
                       for i, value in enumerate(self.sequence(document.get("agents") or [], "agents")))
        road = self.road(document.get("road") or {})
        name = document.get("name", "")
        if not isinstance(name, str):
            raise self.error("name", f"must be a text, got {show_value(name)}")
        prompt = self.text(document["prompt"], "prompt")
        return Scenario(rig_spec=rig, fps=fps, duration=duration, ego=ego, prompt=prompt,
                        agents=agents, road=road, name=name, seed=self.integer(document.get("seed", 0), "seed"),
                        start_frames=start, source=self.source, base_dir=base_dir,
                        time_of_day=self.choice(document.get("time_of_day", "day"), "time_of_day", TIMES_OF_DAY),
                        weather=self.choice(document.get("weather", "clear"), "weather", WEATHERS))

    def road(self, value) -> Road:
        """Lanes, road edges, lane lines ({type, points}), crosswalks, stop lines, sidewalk width, setback."""
        value = self.mapping(value, "road", _ROAD)

        def lines(name: str, minimum: int = 2) -> tuple:
            return tuple(self.points(p, f"road.{name}[{i}]", minimum)
                         for i, p in enumerate(self.sequence(value.get(name) or [], f"road.{name}")))

        lane_lines = []
        for i, item in enumerate(self.sequence(value.get("lane_lines") or [], "road.lane_lines")):
            at = f"road.lane_lines[{i}]"
            row = self.mapping(item, at, {"type", "points"}, ("type", "points"))
            lane_lines.append((self.choice(row["type"], f"{at}.type", tuple(LANE_LINE_TYPES)),
                               self.points(row["points"], f"{at}.points")))
        widths = {name: self.number(value.get(name, default), f"road.{name}")
                  for name, default in (("sidewalk_width", SIDEWALK_WIDTH), ("building_setback", BUILDING_SETBACK))}
        return Road(lines("lanes"), lines("road_edges"), tuple(lane_lines), lines("crosswalks", 3), lines("stop_lines"),
                    **widths)


def from_dict(document, source: str = "scenario", base_dir: Path | None = None) -> Scenario:
    """A validated Scenario from a parsed YAML document; errors name `source`."""
    return validate(_Reader(source).scenario(document, base_dir))


def load(path: str | os.PathLike, rig: str | os.PathLike | None = None) -> Scenario:
    """Read and validate a scenario file (at most 10 MB, yaml.safe_load). `rig`, a views/ name or a rig file the
    user gave (`--rig`), replaces the file's rig: field; a file's document is inlined, as scenarios hold no paths."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise ScenarioError(f"{path}: cannot read the scenario: {error.strerror or error}") from None
    if not path.is_file():
        raise ScenarioError(f"{path}: not a file")
    if size > MAX_BYTES:
        raise ScenarioError(f"{path}: the file is {size / 2**20:.1f} MB; scenario files are limited to "
                            f"{MAX_BYTES // 2**20} MB")
    try:
        document = yaml.safe_load(path.read_bytes().decode("utf-8"))
    # Not only YAMLError: PyYAML's constructors raise ValueError (`!!int abc`), IndexError (`!!int`),
    # AttributeError (`!!timestamp x`) and RecursionError (deep nesting) for text they cannot take.
    except Exception as error:  # noqa: BLE001 - a parse of the user's file: any failure is a bad file
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ScenarioError(f"{path}: not a readable YAML scenario: {first}") from None
    if document is None:
        raise ScenarioError(f"{path}: the file is empty")
    if rig is not None and isinstance(document, dict):
        document = {**document, "rig": _given_rig(rig)}
    try:
        return from_dict(document, str(path), path.resolve().parent)
    except RecursionError:  # a self-referencing YAML alias
        raise ScenarioError(f"{path}: the document refers to itself") from None


def _given_rig(rig: str | os.PathLike) -> str | dict:
    """A rig given on the command line: a views/ name stays a name, a file becomes an inline rig document."""
    if isinstance(rig, str) and rig in rig_names():
        return rig
    return rig_document(rig)


def _document_at(scenario: Scenario, folder: Path) -> dict:
    """The scenario's document for a file in `folder`: a relative start_frames.store is rewritten relative to
    that folder (a relative store is read from the scenario file's folder), so it names the same store."""
    document = scenario.to_dict()
    given = scenario.start_frames.store if scenario.start_frames is not None else None
    if given is not None and not Path(given).is_absolute():
        store = os.path.abspath(scenario.start_store())
        try:
            document["start_frames"]["store"] = Path(os.path.relpath(store, os.path.abspath(folder))).as_posix()
        except ValueError:  # another drive (Windows): no relative path leads there
            document["start_frames"]["store"] = store
    return document


def save(scenario: Scenario, path: str | os.PathLike) -> Path:
    """Write the scenario as YAML (atomically: the old file stays whole until the new one is)."""
    path = Path(path)
    text = yaml.safe_dump(_document_at(scenario, path.parent), sort_keys=False, default_flow_style=None, width=120)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise ScenarioError(f"{path}: cannot write the scenario: {error.strerror or error}") from None
    return path
