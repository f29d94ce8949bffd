"""Errors of the flow model."""

from __future__ import annotations


class FlowValidationError(ValueError):
    """A flow's graph is not valid: a cycle, a duplicate slug, an unknown task..."""


class ParameterError(ValueError):
    """A run's parameters don't fit the flow: an unknown name, or a required one missing."""
