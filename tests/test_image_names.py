"""Image references (``headwater.containers.names``): composed and taken apart as Docker does."""

from __future__ import annotations

import pytest

from headwater.containers.names import image_reference, registry_of, split_reference


def test_references_from_their_parts() -> None:
    assert image_reference("localhost:5000/flows", "etl", "v1") == "localhost:5000/flows/etl:v1"
    assert image_reference("localhost:5000/flows/", "etl", None) == "localhost:5000/flows/etl:latest"
    assert image_reference(None, "etl", "v1") == "etl:v1"


@pytest.mark.parametrize(
    ("reference", "registry", "parts"),
    [
        ("localhost:5000/flows/etl:v1", "localhost:5000", ("localhost:5000/flows/etl", "v1")),
        ("localhost/etl", "localhost", ("localhost/etl", "latest")),
        ("ghcr.io/acme/etl:2", "ghcr.io", ("ghcr.io/acme/etl", "2")),
        ("acme/etl:2", "docker.io", ("acme/etl", "2")),
        ("python:3.11-slim", "docker.io", ("python", "3.11-slim")),
        ("etl", "docker.io", ("etl", "latest")),
    ],
)
def test_registry_and_tag_of_a_reference(reference: str, registry: str, parts: tuple[str, str]) -> None:
    assert registry_of(reference) == registry
    assert split_reference(reference) == parts
