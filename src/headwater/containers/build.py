"""Building a flow's image on the daemon: the streamed build, push, pull and reading a file out, with clear errors.

One implementation for Docker storage (``storage/docker.py``) and
``DockerEnvironment`` (``environments/docker.py``); the DockerAgent pulls with
:func:`pull_image` too. ``context.py`` gathers the build context;
:func:`build_image` sends it to the daemon and streams the log. Every failure is an
:class:`ImageError` whose message names the image, the daemon or the registry, and the fix.
"""

from __future__ import annotations

import io
import logging
import re
import tarfile
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from headwater.containers.names import registry_of, split_reference

if TYPE_CHECKING:
    from docker import DockerClient

    from headwater.containers.context import BuildContext

logger = logging.getLogger("headwater.containers.build")

# Colour codes the daemon wraps a step's stderr in.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# The builder's own lines between a step's output.
_CHATTER = re.compile(r"^\s*(---> |Removing intermediate container )")


#: the start of each line a flow image's healthcheck prints for a problem (``storage/healthcheck.py``
#: prints them; the build's error quotes them).
HEALTHCHECK_FAILED = "headwater healthcheck failed: "

class ImageError(RuntimeError):
    """An image can't be built, pushed, pulled or read; the message says why and what to do."""


class ImageMissing(ImageError):
    """The image is not on the daemon (never built here, or removed)."""


# -- talking to the daemon -------------------------------------------------------------------------------


def build_image(
    client: DockerClient,
    context: BuildContext,
    reference: str,
    *,
    pull: bool,
    build_kwargs: Mapping[str, Any] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> str:
    """Build ``context`` as ``reference``, streaming the log; returns the image's id.

    The RUN steps use the network ``build_kwargs["network_mode"]`` (the owner puts the
    setting ``docker.build_network`` there when it was given none), else the daemon's default.

    Raises:
        ImageError: a step failed (the message has the step and the end of its output,
            or the healthcheck's own message), or the daemon could not be reached.
    """
    kwargs = dict(build_kwargs or {})
    kwargs.setdefault("network_mode", None)
    kwargs.setdefault("pull", pull)
    kwargs.setdefault("rm", True)
    kwargs.setdefault("forcerm", True)
    lines: list[str] = []
    step = "the start of the build"
    image_id = None
    try:
        stream = client.api.build(
            fileobj=io.BytesIO(context.tar()),
            custom_context=True,
            dockerfile=context.dockerfile_path,
            tag=reference,
            decode=True,
            **kwargs,
        )
        for chunk in stream:
            if "error" in chunk:
                raise ImageError(_build_failure(reference, step, str(chunk["error"]), lines, HEALTHCHECK_FAILED))
            aux = chunk.get("aux")
            if isinstance(aux, dict) and "ID" in aux:
                image_id = str(aux["ID"])
            for line in _ANSI.sub("", str(chunk.get("stream", ""))).splitlines():
                if not line.strip():
                    continue
                if line.startswith("Step "):
                    step = line
                    logger.info("building %s: %s", reference, line)
                else:
                    logger.debug("building %s: %s", reference, line)
                lines.append(line)
                if on_line is not None:
                    on_line(line)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"building image {reference} failed: {_daemon_error(client, exc)}") from exc
    if image_id is None:
        image_id = str(client.api.inspect_image(reference)["Id"])
    return image_id


def _build_failure(reference: str, step: str, error: str, lines: list[str], marker: str) -> str:
    checks = [line.split(marker, 1)[1] for line in lines if marker in line]
    if checks:
        return (
            f"building image {reference} failed: the image's healthcheck failed: {'; '.join(checks)} "
            "(pass ignore_healthchecks=True to build it anyway)"
        )
    start = max((i for i, line in enumerate(lines) if line.startswith("Step ")), default=-1) + 1
    output = [line for line in lines[start:] if not _CHATTER.match(line)][-20:]
    message = f"building image {reference} failed at {step}: {error.strip()}"
    if re.match(r"^Step 1/\d+ : FROM ", step):
        message += (
            "; the base image could not be found or pulled: check its name, or pass local_image=True if it is "
            "on this daemon already"
        )
    if output:
        message += "; the step's output ended with:\n" + "\n".join(output)
    return message


def _daemon_error(client: Any, exc: Exception) -> str:
    from headwater.containers.client import describe_daemon

    url = getattr(getattr(client, "api", None), "base_url", None) or describe_daemon()
    explanation = getattr(exc, "explanation", None) or exc
    return f"{type(exc).__name__}: {explanation} (daemon {url})"


def push_image(client: DockerClient, reference: str) -> None:
    """Push ``reference`` to the registry its name starts with.

    Raises:
        ImageError: the registry refused or is not there; the message names it and the fix.
    """
    repository, tag = split_reference(reference)
    registry = registry_of(reference)
    fix = (
        f"check that a registry listens at {registry}, that this daemon may push there over plain HTTP if it is not "
        f"HTTPS (dockerd's insecure-registries; localhost is allowed), and that it is logged in "
        f"(docker login {registry})"
    )
    try:
        for chunk in client.api.push(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                raise ImageError(f"pushing {reference} to the registry {registry} failed: {chunk['error']}; {fix}")
    except ImageError:
        raise
    except Exception as exc:
        error = _daemon_error(client, exc)
        raise ImageError(f"pushing {reference} to the registry {registry} failed: {error}; {fix}") from exc
    logger.info("pushed %s", reference)


def pull_image(client: DockerClient, reference: str) -> None:
    """Pull ``reference`` from its registry.

    Raises:
        ImageError: the registry doesn't have it or can't be reached; the message names both.
    """
    repository, tag = split_reference(reference)
    registry = registry_of(reference)
    try:
        for chunk in client.api.pull(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                raise ImageError(_pull_failure(reference, registry, str(chunk["error"])))
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(_pull_failure(reference, registry, _daemon_error(client, exc))) from exc
    logger.info("pulled %s", reference)


def _pull_failure(reference: str, registry: str, error: str) -> str:
    return (
        f"pulling {reference} from the registry {registry} failed: {error}; check that the image was pushed there "
        f"(build with push=True) and that the registry is reachable from this daemon"
    )


def image_id(client: DockerClient, reference: str) -> str:
    """The id of the image ``reference`` on this daemon.

    Raises:
        ImageMissing: the daemon has no such image.
    """
    from docker.errors import ImageNotFound

    try:
        return str(client.api.inspect_image(reference)["Id"])
    except ImageNotFound:
        raise ImageMissing(_missing(client, reference)) from None
    except Exception as exc:
        raise ImageError(f"can't inspect image {reference}: {_daemon_error(client, exc)}") from exc


def _missing(client: Any, reference: str) -> str:
    url = getattr(getattr(client, "api", None), "base_url", "the daemon")
    return (
        f"the image {reference} is not on the Docker daemon at {url} (was it removed?); pull it from its registry "
        "or build it again"
    )


def read_file(client: DockerClient, reference: str, path: str) -> bytes:
    """The bytes of the file ``path`` inside the image ``reference``, read without running anything.

    A container is created from the image (not started), the file copied out of it,
    and the container removed.

    Raises:
        ImageMissing: the image is not on the daemon.
        ImageError: the image has no such file, or the daemon failed.
    """
    from docker.errors import ImageNotFound, NotFound

    try:
        container = client.api.create_container(reference, command=["true"], labels={"io.headwater.purpose": "read"})
    except ImageNotFound:
        raise ImageMissing(_missing(client, reference)) from None
    except Exception as exc:
        raise ImageError(f"can't read {path} from image {reference}: {_daemon_error(client, exc)}") from exc
    try:
        stream, _ = client.api.get_archive(container["Id"], path)
        data = b"".join(stream)
    except NotFound:
        raise ImageError(
            f"the image {reference} has no file {path}; was it built from another version of the flow?"
        ) from None
    except Exception as exc:
        raise ImageError(f"can't read {path} from image {reference}: {_daemon_error(client, exc)}") from exc
    finally:
        try:
            client.api.remove_container(container["Id"], force=True)
        except Exception:  # the file was read; a leftover stopped container is only clutter
            logger.warning("could not remove the container made to read %s from %s", path, reference)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        member = next((m for m in archive.getmembers() if m.isfile()), None)
        extracted = archive.extractfile(member) if member is not None else None
        if extracted is None:
            raise ImageError(f"{path} in image {reference} is not a file")
        return extracted.read()
