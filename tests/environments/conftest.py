"""The environments' tests reuse the executors' real Dask scheduler + worker processes."""

from executors.conftest import dask_scheduler_address

__all__ = ["dask_scheduler_address"]
