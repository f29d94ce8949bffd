"""Docker images and containers: the daemon connection and building a flow's image, one implementation.

Shared by Docker storage (``storage/docker.py``), ``DockerEnvironment``
(``environments/docker.py``) and the ``DockerAgent`` (``agent/docker.py``):
``client.py`` reaches the daemon, ``names.py`` composes and splits image references,
``dockerfile.py`` writes a flow image's Dockerfile (pure text, in cache-friendly order),
``context.py`` checks what goes in the image and gathers the build context,
``build.py`` builds with the SDK while streaming the log, pushes, pulls and reads files
out of images, and ``healthcheck.py`` is the script that runs inside the image during
the build. ``docs/docker.md`` is the user's side. The Docker SDK (the
``docker`` extra) is imported only here, and only when used.
"""
