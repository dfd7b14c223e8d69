"""Execution: the action catalog shared with decision, and executors that carry actions out."""
