"""Image references: ``[registry/]name:tag``, built and taken apart the same way everywhere.

Docker storage and DockerEnvironment record ``registry_url``, ``image_name`` and
``image_tag`` in their specs; the DockerAgent turns a spec back into the reference it
runs with :func:`image_reference`, and checks its registry with :func:`registry_of`.
"""

from __future__ import annotations


def image_reference(registry_url: str | None, image_name: str, image_tag: str | None) -> str:
    """``localhost:5000/flows/etl:20261202T…`` from its parts (no registry: ``etl:…``; no tag: ``…:latest``)."""
    name = f"{registry_url.rstrip('/')}/{image_name}" if registry_url else image_name
    return f"{name}:{image_tag or 'latest'}"


def split_reference(reference: str) -> tuple[str, str]:
    """``(repository, tag)`` of a reference; the tag is ``latest`` when none is given (a digest stays whole)."""
    if "@" in reference:
        return reference, ""
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon > slash:
        return reference[:colon], reference[colon + 1 :]
    return reference, "latest"


def registry_of(reference: str) -> str:
    """The registry a reference pulls from: ``localhost:5000``, ``ghcr.io``, or ``docker.io`` for bare names.

    Like Docker itself: the first path part is a registry when it has a ``.`` or a ``:``
    or is ``localhost``; otherwise the image is on Docker Hub.
    """
    first, sep, _ = reference.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"
