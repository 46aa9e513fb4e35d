"""Execution venues behind one interface."""
