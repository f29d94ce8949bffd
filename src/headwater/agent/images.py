"""Which image a flow run runs in, read from its flow version's registered metadata only.

Shared by the agents that run flows in images (``docker.py``, ``kubernetes.py``): the agent
never unpickles a flow (DESIGN.md §4), so the image comes from the JSON the flow was
registered with: Docker storage's image, else a DockerEnvironment's, else the environment's
``metadata["image"]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from headwater.containers.names import image_reference

if TYPE_CHECKING:
    from headwater.schemas.flows import FlowDetail


class DeployError(RuntimeError):
    """A run can't be deployed: no image, a refused registry, a refused manifest; the message says the fix."""


def image_of(flow: FlowDetail) -> str:
    """The image a run of ``flow`` runs in, from its registered metadata only.

    Docker storage's image, else a DockerEnvironment's, else the environment's
    ``metadata["image"]``.

    Raises:
        DeployError: none of them names an image; says which one was not built.
    """
    metadata, unbuilt = flow.metadata, []
    for what, spec in (("storage", metadata.storage), ("environment", metadata.environment)):
        if spec and spec.get("kind") == "docker":
            if spec.get("image_name") and spec.get("image_tag"):
                return image_reference(spec.get("registry_url"), spec["image_name"], spec["image_tag"])
            unbuilt.append(what)
    image = ((metadata.environment or {}).get("metadata") or {}).get("image")
    if isinstance(image, str) and image.strip():
        return image.strip()
    named = f"flow {metadata.name!r} (version id {flow.id}) has no image"
    if unbuilt:
        raise DeployError(
            f"{named}: its Docker {' and '.join(unbuilt)} names no built image (image_name/image_tag unset); "
            "build the image before registering (flow.register(build=True), or storage.build() first)"
        )
    raise DeployError(
        f"{named}; keep it in Docker storage, use a DockerEnvironment, or set metadata={{'image': ...}} on its "
        "environment"
    )
