"""Undo and redo over validated edits: a failed edit changes nothing and comes back as text."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivesim import scenario as sc
from drivesim.editor.history import MAX_UNDO, History

CRUISE = Path(__file__).resolve().parents[2] / "scenarios" / "straight_cruise.yaml"


@pytest.fixture
def history() -> History:
    return History(sc.load(CRUISE))


def test_an_edit_then_undo_then_redo(history):
    original = history.current
    assert history.apply("left", lambda s: sc.move_ego(s, left=3.5)) is None
    moved = history.current
    assert moved.ego.positions[0, 1] == pytest.approx(original.ego.positions[0, 1] + 3.5)
    assert history.undo() == "left" and history.current is original
    assert history.redo() == "left" and history.current is moved
    assert history.redo() is None  # nothing left to redo


def test_a_failed_edit_changes_nothing_and_returns_the_message(history):
    before = history.current
    error = history.apply("too fast", lambda s: sc.scale_speed(s, 50.0))
    assert error is not None and "physically impossible" in error and str(CRUISE) in error
    assert history.current is before and not history.can_undo


def test_a_new_edit_clears_redo(history):
    history.apply("a", lambda s: sc.move_ego(s, left=1.0))
    history.undo()
    assert history.can_redo
    history.apply("b", lambda s: sc.move_ego(s, left=-1.0))
    assert not history.can_redo


def test_errors_name_the_file_not_the_chain_of_edits(history):
    for k in range(3):
        history.apply(f"edit {k}", lambda s: sc.move_ego(s, forward=0.5))
    error = history.apply("bad", lambda s: sc.scale_speed(s, -1.0))
    assert error.startswith(f"{CRUISE}: ") and "edit 0" not in error


def test_undo_keeps_the_last_hundred_edits(history):
    for k in range(MAX_UNDO + 5):
        assert history.apply(f"{k}", lambda s: sc.move_ego(s, forward=0.01)) is None
    assert len(history.undo_stack) == MAX_UNDO
    steps = 0
    while history.undo() is not None:
        steps += 1
    assert steps == MAX_UNDO


def test_opening_another_scenario_can_be_undone(history):
    original = history.current
    other = sc.load(CRUISE.with_name("cut_in.yaml"))
    history.reset(other)
    assert history.current.name == "cut_in" and history.source == other.source
    history.undo()
    assert history.current is original


def test_a_bug_in_an_edit_is_not_swallowed(history):
    with pytest.raises(TypeError, match="not a Scenario"):
        history.apply("broken", lambda s: None)
