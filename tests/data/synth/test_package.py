"""The synth package's __init__ stays light: what reads the ego car's size does not load the renderer."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_scenario_and_the_editor_view_does_not_import_open3d():
    # traffic.py is imported for EGO_SIZE; a package __init__ that imported logs.py would pull in
    # raycast.py and open3d (seconds) with it.
    code = ("import sys, drivesim.scenario, drivesim.editor.bev, drivesim.data.synth.traffic; "
            "assert 'open3d' not in sys.modules, 'open3d was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_synth_config_and_generate_are_loaded_from_logs_on_use():
    from drivesim.data import synth
    from drivesim.data.synth import SynthConfig, generate, logs

    assert SynthConfig is logs.SynthConfig and generate is logs.generate
    assert sorted(synth.__all__) == ["SynthConfig", "generate"]
