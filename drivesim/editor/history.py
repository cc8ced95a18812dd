"""The scenario being edited, with undo and redo.

Every edit is a function Scenario -> Scenario that validates (drivesim.scenario's edits do). An edit
that fails leaves the scenario as it was and returns the error's text for the page to show beside the
field: the editor never shows a traceback and never loses what the user has built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from drivesim.errors import DrivesimError
from drivesim.scenario import Scenario

MAX_UNDO = 100  # steps kept; scenarios are small, but a session that edits all afternoon should not grow forever


@dataclass
class History:
    """The current scenario, the states before it (undo) and after it (redo), each with its edit's name."""

    current: Scenario
    undo_stack: list[tuple[str, Scenario]] = field(default_factory=list)  # (edit that left it, scenario)
    redo_stack: list[tuple[str, Scenario]] = field(default_factory=list)
    source: str = ""  # errors name this (the file, or what the scenario came from), not the chain of edits

    def __post_init__(self):
        self.source = self.source or self.current.source

    def apply(self, name: str, edit: Callable[[Scenario], Scenario]) -> str | None:
        """Run `edit` on the current scenario. None when it worked; the error's text when it did not."""
        try:
            edited = edit(self.current)
        except DrivesimError as error:  # ScenarioError, ConfigError: a message meant for the user
            return str(error)
        except (ValueError, TypeError, OverflowError) as error:  # a form value numpy or float() refused
            return f"{self.source}: {name}: {error}"
        if not isinstance(edited, Scenario):
            raise TypeError(f"edit {name!r} returned {type(edited).__name__}, not a Scenario")
        self.undo_stack.append((name, self.current))
        del self.undo_stack[:-MAX_UNDO]
        self.redo_stack.clear()
        self.current = replace(edited, source=self.source)
        return None

    def reset(self, scenario: Scenario) -> None:
        """A newly opened scenario: the old one can be undone back to."""
        self.apply(f"open {scenario.name or scenario.source}", lambda _: scenario)
        self.source = scenario.source
        self.current = replace(self.current, source=self.source)

    @property
    def can_undo(self) -> bool:
        return bool(self.undo_stack)

    @property
    def can_redo(self) -> bool:
        return bool(self.redo_stack)

    def undo(self) -> str | None:
        """Step back; returns the name of the edit undone, or None when there is nothing to undo."""
        if not self.undo_stack:
            return None
        name, previous = self.undo_stack.pop()
        self.redo_stack.append((name, self.current))
        self.current = previous
        return name

    def redo(self) -> str | None:
        if not self.redo_stack:
            return None
        name, following = self.redo_stack.pop()
        self.undo_stack.append((name, self.current))
        self.current = following
        return name
