"""The flow model: Flow, Task, Parameter, Edge, State. Pure: no I/O, no other headwater imports."""

from headwater.core.edge import Edge
from headwater.core.errors import FlowValidationError
from headwater.core.flow import Flow
from headwater.core.task import FunctionTask, Parameter, Task, task

__all__ = ["Edge", "Flow", "FlowValidationError", "FunctionTask", "Parameter", "Task", "task"]
