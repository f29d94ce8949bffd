"""The wire format (pydantic), shared by the server and the client; one module per resource.

Importing this package imports pydantic; ``import headwater`` does not.
"""

from headwater.schemas.flows import EdgeMetadata, FlowMetadata, ParameterMetadata, TaskMetadata

__all__ = ["EdgeMetadata", "FlowMetadata", "ParameterMetadata", "TaskMetadata"]
