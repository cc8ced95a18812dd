"""Merging generated scenes into an existing nuScenes data set (`drivesim export --merge-with`): its
tables read and checked, the generated records appended with name-keyed records (categories, attributes,
sensors, visibility) mapped onto the existing ones, and its files hard-linked into the new set.

Hard links take no space, stay valid when the source set moves, and leave its files as they are as long
as nobody edits the linked files in place (export never writes to them); symlinks would break when the
source moves. Where a link is impossible (another filesystem, a file the user may not link) the file is
copied.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from drivesim.data.nuscenes_tables import TABLE_NAMES
from drivesim.errors import DataError

__all__ = ["NAME_KEYS", "NAME_REFERENCES", "TokenCollision", "link_tree", "merge_tables", "read_tables",
           "table_folders", "write_table_files"]

# Tables whose tokens are derived from a name; merged by that name, not appended.
NAME_KEYS = {"category": "name", "attribute": "name", "sensor": "channel", "visibility": "level"}
# Where the generated tables refer to those tokens: (table, field).
NAME_REFERENCES = {"category": (("instance", "category_token"),),
                   "attribute": (("sample_annotation", "attribute_tokens"),),
                   "sensor": (("calibrated_sensor", "sensor_token"),),
                   "visibility": (("sample_annotation", "visibility_token"),)}


def read_tables(table_root: Path, option: str) -> dict[str, list[dict]]:
    """The 13 tables of a nuScenes version folder; DataError naming `option` and the table."""
    tables = {}
    for name in TABLE_NAMES:
        path = table_root / f"{name}.json"
        try:
            tables[name] = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(f"{option}: {path}: table missing") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DataError(f"{option}: {path}: not valid JSON ({error})") from None
        if not isinstance(tables[name], list) or not all(isinstance(r, dict) and "token" in r for r in tables[name]):
            raise DataError(f"{option}: {path}: expected a JSON list of records with tokens")
    return tables


def write_table_files(table_root: Path, tables: dict[str, list[dict]]) -> None:
    """The 13 tables as the writer formats them. Each goes to a new file renamed over the old entry,
    never written into an existing file, which could be a hard link into the merged set."""
    table_root.mkdir(parents=True, exist_ok=True)
    for name in TABLE_NAMES:
        partial = table_root / f"{name}.json.partial"
        partial.write_text(json.dumps(tables[name], indent=0) + "\n")
        os.replace(partial, table_root / f"{name}.json")


def merge_tables(existing: dict[str, list[dict]], generated: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Existing records, then the generated ones; name-keyed records (NAME_KEYS) that exist already
    are dropped and the generated references point at the existing tokens. Raises DataError when a
    generated token collides with an existing one (the caller retries with another seed)."""
    generated = {name: [dict(r) for r in records] for name, records in generated.items()}
    remap: dict[str, dict[str, str]] = {}
    for table, key in NAME_KEYS.items():
        known = {record[key]: record for record in existing[table]}
        remap[table], kept = {}, []
        for record in generated[table]:
            match = known.get(record[key])
            if match is None:
                kept.append(record)
            elif table == "sensor" and match.get("modality") != record["modality"]:
                raise DataError(f"--merge-with: sensor {record['channel']} is a {match.get('modality')} there, "
                                f"a {record['modality']} in the rollouts")
            else:
                remap[table][record["token"]] = match["token"]
        generated[table] = kept
    _renumber_categories(existing["category"], generated["category"])
    for table, references in NAME_REFERENCES.items():
        for target, name in references:
            for record in generated[target]:
                value = record[name]
                record[name] = ([remap[table].get(v, v) for v in value] if isinstance(value, list)
                                else remap[table].get(value, value))
    taken = {record["token"] for records in existing.values() for record in records}
    clashes = sorted({record["token"] for records in generated.values() for record in records} & taken)
    if clashes:
        raise TokenCollision(f"{len(clashes)} generated token(s) exist in --merge-with, e.g. {clashes[0]}")
    return {name: existing[name] + generated[name] for name in TABLE_NAMES}


class TokenCollision(DataError):
    """A generated token is already used by the merged set."""


def _renumber_categories(existing: list[dict], added: list[dict]) -> None:
    """Give added categories indices after the existing ones (the lidarseg index must stay unique)."""
    indices = [record["index"] for record in existing if isinstance(record.get("index"), int)]
    following = max(indices, default=-1) + 1
    for record in added:
        if "index" in record and indices:
            record["index"] = following
            following += 1


def link_tree(source: Path, target: Path, skip: set[Path]) -> tuple[int, int]:
    """Hard-link every file under `source` into `target` (copy where a link fails), following
    symlinked folders; the folders in `skip` stay out. Returns (linked, copied)."""
    linked = copied = 0
    for folder, subfolders, files in os.walk(source, followlinks=True):
        here = Path(folder)
        subfolders[:] = sorted(s for s in subfolders if (here / s) not in skip)
        destination = target / here.relative_to(source)
        destination.mkdir(parents=True, exist_ok=True)
        for name in sorted(files):
            if here / name in skip:
                continue
            try:
                os.link(here / name, destination / name, follow_symlinks=True)
                linked += 1
            except OSError:  # another filesystem, or links to files of others not allowed
                shutil.copy2(here / name, destination / name)
                copied += 1
    return linked, copied


def table_folders(dataroot: Path) -> set[Path]:
    """Version folders (holding scene.json): their tables are merged or, for other versions, left out."""
    return {child for child in dataroot.iterdir() if child.is_dir() and (child / "scene.json").is_file()}
