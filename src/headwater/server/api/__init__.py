"""The routes, one module per resource (the same names as ``server/models``)."""
