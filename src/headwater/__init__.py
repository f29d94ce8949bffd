"""headwater: a Python workflow orchestrator.

``import headwater`` loads only the flow model; executors, storage, settings
and the client load when first used.
"""

from headwater.core import Flow, Parameter, Task, task

__version__ = "0.1.0"

__all__ = ["Flow", "Parameter", "Task", "__version__", "task"]
