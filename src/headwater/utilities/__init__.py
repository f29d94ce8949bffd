"""Kept for old import paths: ``headwater.utilities.logging`` (now ``headwater.engine.logs``)."""
