"""Grading: ``check(exercise_id, fn)`` (being built)."""
