"""The scenario editor: views and controls for building and changing scenarios before a rollout."""
