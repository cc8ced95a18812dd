"""Draw the dense scene maps of a scenario at one time, every camera: what a world model taking dense maps is
given from the scenario file alone (no clip, no start frame). Redraws docs/scenario_maps.png:

    .venv/bin/python docs/draw_scenario_maps.py scenarios/pedestrian_crossing.yaml --time 5 --out docs/scenario_maps.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from drivesim.data.clip_sheet import maps_legend
from drivesim.rigs import parse_size
from drivesim.scenario import load
from drivesim.scene_maps import picture, render_scene


def draw(scenario_path: Path, time: float, size: tuple[int, int], out: Path, columns: int = 3) -> Path:
    scenario = load(scenario_path)
    maps = render_scene(scenario.rig, scenario.layout_frames([time]), size=size)
    tiles = picture(maps)[:, 0]  # [V, H, W, 3]
    views, (width, height) = len(tiles), size
    rows = -(-views // columns)
    font = ImageFont.load_default(size=12)
    header = 22
    legend = maps_legend(columns * width)
    sheet = Image.new("RGB", (columns * width, header + rows * height + legend.height), (20, 20, 20))
    for v, (camera, tile) in enumerate(zip(scenario.rig.cameras, tiles)):
        image = Image.fromarray(tile)
        ImageDraw.Draw(image).text((4, 3), camera.name, fill=(255, 255, 255), font=font, stroke_width=2,
                                   stroke_fill=(0, 0, 0))
        sheet.paste(image, ((v % columns) * width, header + (v // columns) * height))
    sheet.paste(legend, (0, header + rows * height))
    title = f"{scenario_path.name} at t={time:g} s: {maps.look[0]}, {maps.look[1]}"
    ImageDraw.Draw(sheet).text((6, 4), title, fill=(230, 230, 230), font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", type=Path, help="a scenario file")
    parser.add_argument("--time", type=float, default=1.0, help="seconds into the scenario (default 1)")
    parser.add_argument("--size", default="256x128", help="map size per camera WIDTHxHEIGHT (default 256x128)")
    parser.add_argument("--out", type=Path, default=Path("docs/scenario_maps.png"), help="the PNG to write")
    args = parser.parse_args()
    print(draw(args.scenario, args.time, parse_size(args.size), args.out))


if __name__ == "__main__":
    main()
