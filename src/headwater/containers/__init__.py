"""Docker images and containers: the daemon connection, and (in later modules) building images.

Shared by Docker storage (``storage/docker.py``), ``DockerEnvironment``
(``environments/docker.py``) and the ``DockerAgent`` (``agent/docker.py``), so
there is one way to reach the daemon and one way to build a flow's image. The
Docker SDK (the ``docker`` extra) is imported only here, and only when used.
"""
