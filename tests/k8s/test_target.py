"""The kubeconfig switch: which cluster the Kubernetes acceptance test runs against, and its bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from k8s.target import SWITCH, TargetError, emulated, from_environment, switched_on


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\nkind: Config\n")
    return path


def real(kubeconfig: Path, **more: str) -> dict[str, str]:
    return {SWITCH: str(kubeconfig), "HEADWATER_TEST_K8S_REGISTRY": "ghcr.io/me/hw-tests/",
            "HEADWATER_TEST_K8S_SERVER_HOST": "10.0.0.5", **more}  # fmt: skip


def test_off_unless_the_kubeconfig_variable_is_set() -> None:
    assert not switched_on({}) and not switched_on({SWITCH: "  "})
    assert switched_on({SWITCH: "/somewhere/kubeconfig"})


def test_a_real_cluster_from_the_variables(kubeconfig: Path) -> None:
    target = from_environment(real(kubeconfig))
    assert target.real and target.kubeconfig == kubeconfig
    assert target.registry == "ghcr.io/me/hw-tests"  # an image prefix, the trailing slash dropped
    assert (target.server_bind, target.server_host) == ("0.0.0.0", "10.0.0.5")  # bound beyond loopback: tokens on
    assert (target.namespace, target.service_account, target.context, target.image_pull_secret) == (
        "default", "headwater-run", None, None,
    )  # fmt: skip
    more = from_environment(real(
        kubeconfig, HEADWATER_TEST_K8S_NAMESPACE="flows", HEADWATER_TEST_K8S_SERVICE_ACCOUNT="runs",
        HEADWATER_TEST_K8S_CONTEXT="staging", HEADWATER_TEST_K8S_IMAGE_PULL_SECRET="ghcr",
    ))  # fmt: skip
    assert (more.namespace, more.service_account, more.context, more.image_pull_secret) == (
        "flows", "runs", "staging", "ghcr",
    )  # fmt: skip


def test_the_emulated_cluster_is_reached_on_loopback(kubeconfig: Path) -> None:
    class Cluster:
        pass

    cluster = Cluster()
    cluster.kubeconfig = kubeconfig  # type: ignore[attr-defined]
    target = emulated(cluster, "localhost:5000")
    assert not target.real and target.emulator is cluster
    assert target.registry == "localhost:5000/flows" and target.server_host == target.server_bind == "127.0.0.1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"HEADWATER_TEST_K8S_REGISTRY": ""}, r"HEADWATER_TEST_K8S_REGISTRY is needed too: a registry"),
        ({"HEADWATER_TEST_K8S_SERVER_HOST": ""}, r"HEADWATER_TEST_K8S_SERVER_HOST is needed too: an address"),
        ({"HEADWATER_TEST_K8S_REGISTRY": "https://ghcr.io/me"}, "has a scheme: give it as an image prefix"),
        ({"HEADWATER_TEST_K8S_SERVER_HOST": "http://10.0.0.5"}, "must be a host name or address only"),
        ({"HEADWATER_TEST_K8S_SERVER_HOST": "10.0.0.5:4200"}, "must be a host name or address only"),
        ({SWITCH: "/nowhere/kubeconfig"}, r"HEADWATER_TEST_KUBECONFIG='/nowhere/kubeconfig' is not a file"),
    ],
)
def test_a_missing_or_wrong_variable_names_itself_and_the_fix(
    kubeconfig: Path, change: dict[str, str], message: str
) -> None:
    with pytest.raises(TargetError, match=message):
        from_environment({**real(kubeconfig), **change})
