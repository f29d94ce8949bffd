"""A Kubernetes API server for the tests: kmock's ``KubernetesEmulator``, over real HTTP, with what
headwater needs a real API server to do.

kmock keeps objects in memory and serves create, get, list, watch, patch and delete for any
resource; on top of it :class:`Emulator` adds what a real API server does and kmock leaves out:

- every object headwater creates is validated against the Kubernetes schema
  (``kubernetes-validate`` at :data:`KUBERNETES_VERSION`); an invalid one is a 422, as from a
  real server, so a manifest only a lax emulator would take fails the tests;
- metadata a server fills in: ``uid``, ``creationTimestamp``, ``resourceVersion``, the
  namespace, ``generateName``;
- ``labelSelector`` and ``fieldSelector`` on lists and watches, and ``timeoutSeconds`` on watches;
- the ``pods/log`` subresource, answered by whoever runs the pods (``podrunner.py``);
- :meth:`Emulator.forbid`: answer 403 to a verb on a resource, as RBAC does, to test what a
  service account without a permission sees.

:class:`Cluster` runs it in a thread with an event loop of its own and writes a kubeconfig for
it; the pod runner (``podrunner.py``) plays the kubelet and the job controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import ipaddress
import itertools
import json
import re
import ssl
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp.web
import kmock
from kmock._internal import apps, parsing, rendering

#: The Kubernetes version the schemas come from (that of the pinned ``kubernetes`` client, 36 → 1.36).
KUBERNETES_VERSION = "1.36"
#: Resources the emulator knows from the start (the rest appear when first created).
RESOURCES = ("v1/pods", "v1/events", "v1/secrets", "v1/serviceaccounts", "batch/v1/jobs")


_guess_k8s = parsing.guess_k8s


def _guess_k8s_as_a_server_does(k8s: Any, method: Any, query: dict[str, str]) -> Any:
    """kmock takes ``?watch=true`` only; a real server parses it as Go does, and the Python
    client sends ``watch=True``."""
    if str(query.get("watch", "")).lower() in ("true", "1", "t"):
        query = {**query, "watch": "true"}
    return _guess_k8s(k8s, method, query)


parsing.guess_k8s = _guess_k8s_as_a_server_does


@functools.cache
def _definitions(folder: str) -> Any:
    from kubernetes_validate import utils

    return utils.schema_contents(f"{folder}/_definitions.json", KUBERNETES_VERSION)


@functools.cache
def validator(kind: str, api_version: str) -> Any:
    """The strict schema of ``kind`` at :data:`KUBERNETES_VERSION`, as ``kubernetes_validate.validate``
    uses it, made once (that function reads the whole definitions file at every call)."""
    import jsonschema
    from kubernetes_validate import utils
    from referencing import Registry, Resource

    version = [v for v in utils.all_versions() if utils.major_minor(v) <= KUBERNETES_VERSION][-1]
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = utils.schema_contents(f"{folder}/{kind.lower()}-{group}.json", KUBERNETES_VERSION)
    registry = Resource.from_contents(_definitions(folder)) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_selector(text: str) -> list[tuple[str, str, str | None]]:
    """``a=1,b!=2,c`` → ``[("a", "=", "1"), ("b", "!=", "2"), ("c", "exists", None)]``."""
    parts = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            parts.append((key.strip(), "!=", value.strip()))
        elif "==" in term or "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            parts.append((key.strip(), "=", value.strip()))
        elif term.startswith("!"):
            parts.append((term[1:].strip(), "absent", None))
        else:
            parts.append((term, "exists", None))
    return parts


def _matches(terms: list[tuple[str, str, str | None]], values: Callable[[str], str | None]) -> bool:
    for key, op, wanted in terms:
        got = values(key)
        if (
            (op == "=" and got != wanted)
            or (op == "!=" and got == wanted)
            or (op == "exists" and got is None)
            or (op == "absent" and got is not None)
        ):
            return False
    return True


def _field(obj: dict[str, Any], dotted: str) -> str | None:
    value: Any = obj
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return None if value is None else str(value)


def selects(request: rendering.Request, obj: dict[str, Any]) -> bool:
    """Whether ``obj`` passes the request's ``labelSelector`` and ``fieldSelector``."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    label_terms = _parse_selector(request.params.get("labelSelector", ""))
    field_terms = _parse_selector(request.params.get("fieldSelector", ""))
    return _matches(label_terms, labels.get) and _matches(field_terms, lambda key: _field(obj, key))


class Emulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    """kmock's emulator with schema validation, server-set metadata, selectors, pod logs and 403s."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for name in RESOURCES:
            self.resources[name] = {}
        self.versions = itertools.count(1)
        self.forbidden: set[tuple[str, str]] = set()
        #: ``(namespace, pod name) -> text``: set by the pod runner; answers ``pods/{name}/log``.
        self.pod_log: Callable[[str, str], str | None] = lambda namespace, name: None
        #: every object that failed validation, for tests that want to see it.
        self.invalid: list[tuple[dict[str, Any], str]] = []
        #: called after every write (create, patch, delete): the pod runner reconciles on it.
        self.on_write: Callable[[], None] = lambda: None

    def forbid(self, verb: str, plural: str) -> None:
        """Answer 403 to ``verb`` (create, get, list, watch, patch, delete) on ``plural`` from now on."""
        self.forbidden.add((verb, plural))

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        try:
            return await self._answer(request)
        finally:
            # kmock keeps every request it served (for its assertions, which these tests don't use)
            # and scans them all for each new one: a session's worth made a create cost 200 ms.
            with contextlib.suppress(ValueError):
                self._requests.remove(request)

    async def _answer(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        resource = request.resource
        if resource is not None:
            verb = _verb(request)
            if (verb, resource.plural) in self.forbidden:
                return _status(403, "Forbidden", _forbidden_message(verb, resource, request.namespace))
            if request.action == kmock.action.FETCH and request.subresource == "log" and resource.plural == "pods":
                text = self.pod_log(request.namespace or "default", request.name or "")
                if text is None:
                    return _status(404, "NotFound", f'pods "{request.name}" not found')
                return aiohttp.web.Response(text=text, content_type="text/plain")
            if request.action == kmock.action.CREATE and isinstance(request.data, dict):
                problem = self._prepare(request, request.data)
                if problem is not None:
                    return _status(422, "Invalid", problem)
            if request.action == kmock.action.UPDATE and isinstance(request.data, dict):
                request.data.setdefault("metadata", {})["resourceVersion"] = str(next(self.versions))
        try:
            return await super()._handle(request)  # type: ignore[no-any-return]
        finally:
            if resource is not None and request.action in (kmock.action.CREATE, kmock.action.UPDATE,
                                                            kmock.action.DELETE):  # fmt: skip
                self.on_write()

    def _prepare(self, request: rendering.Request, obj: dict[str, Any]) -> str | None:
        """Validate a new object and fill in what the server sets; the problem, if it is invalid."""
        metadata = obj.setdefault("metadata", {})
        resource = request.resource
        if not obj.get("apiVersion") and resource is not None and resource.version:  # as the API server: the URL's
            obj["apiVersion"] = f"{resource.group}/{resource.version}" if resource.group else resource.version
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = f"{metadata['generateName']}{uuid.uuid4().hex[:5]}"
        if request.namespace:
            metadata["namespace"] = request.namespace
        if obj.get("kind") in ("Job", "Pod", "Secret", "ServiceAccount", "Event"):
            import jsonschema

            try:
                validator(str(obj["kind"]), str(obj.get("apiVersion"))).validate(obj)
            except jsonschema.ValidationError as exc:
                message = f"{obj.get('kind')} {metadata.get('name')!r} is invalid: {exc.message}"
                self.invalid.append((json.loads(json.dumps(obj)), message))
                return message
        metadata.setdefault("uid", str(uuid.uuid4()))
        metadata.setdefault("creationTimestamp", now())
        metadata["resourceVersion"] = str(next(self.versions))
        return None

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        listed = await super()._serve_list(request)
        listed["items"] = [obj for obj in listed["items"] if selects(request, obj)]
        listed["metadata"] = {"resourceVersion": str(next(self.versions))}
        return listed

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        timeout = float(request.params.get("timeoutSeconds") or 0) or None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        events = super()._serve_watch(request).__aiter__()
        while True:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return
            try:
                event = await asyncio.wait_for(events.__anext__(), remaining)
            except (TimeoutError, StopAsyncIteration):
                return
            if event == b"" or not isinstance(event, dict) or selects(request, event.get("object") or {}):
                yield event


def _verb(request: rendering.Request) -> str:
    return {
        kmock.action.CREATE: "create",
        kmock.action.FETCH: "get",
        kmock.action.LIST: "list",
        kmock.action.WATCH: "watch",
        kmock.action.UPDATE: "patch",
        kmock.action.DELETE: "delete",
    }.get(request.action, "get")


def _forbidden_message(verb: str, resource: Any, namespace: str | None) -> str:
    group = f'in API group "{resource.group}"' if resource.group else 'in API group ""'
    where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    return (
        f'{resource.plural}{"." + resource.group if resource.group else ""} is forbidden: User '
        f'"system:serviceaccount:{namespace or "default"}:headwater-agent" cannot {verb} resource '
        f'"{resource.plural}" {group} {where}'
    )


def _status(code: int, reason: str, message: str) -> aiohttp.web.Response:
    body = {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}  # fmt: skip
    return aiohttp.web.json_response(body, status=code)


#: Where a kubelet mounts a pod's service-account token, CA certificate and namespace.
SERVICE_ACCOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


def write_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: ``(ca.crt, server.crt, server.key)``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    end = start + datetime.timedelta(days=2)

    def certificate(subject: str, key: Any, issuer: Any, issuer_key: Any, ca: bool) -> Any:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        )  # fmt: skip
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ), critical=True)  # fmt: skip
        else:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
                x509.DNSName("kubernetes.default.svc")]), critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)  # fmt: skip
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("emulator-ca", ca_key, None, ca_key, ca=True)
    server = certificate("kube-apiserver", server_key, ca.subject, ca_key, ca=False)
    paths = folder / "ca.crt", folder / "server.crt", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    return paths


class Cluster:
    """The emulator serving real HTTP on 127.0.0.1, in a thread of its own; ``url``, ``kubeconfig``.

    It also serves HTTPS on :attr:`https_port` (a certificate for 127.0.0.1 from a CA of its own,
    :attr:`ca_file`): what a pod's in-cluster configuration talks to, with the token, CA and
    namespace of :meth:`service_account_folder` mounted as a kubelet mounts them.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.url = ""
        self.https_port = 0
        self.ca_file = folder / "ca.crt"
        self.emulator: Emulator | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="k8s-emulator", daemon=True)
        self._error: BaseException | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.folder / "kubeconfig"

    def start(self, timeout: float = 30.0) -> Cluster:
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise RuntimeError(f"the Kubernetes API emulator did not start: {self._error!r}")
        self.kubeconfig.write_text(
            json.dumps({
                "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
                "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
                "users": [{"name": "agent", "user": {"token": "emulator-token"}}],
                "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "agent",
                                                              "namespace": "default"}}],
            })
        )  # fmt: skip
        return self

    def service_account_folder(self, namespace: str, account: str) -> Path:
        """What a kubelet mounts at :data:`SERVICE_ACCOUNT_PATH` in a pod of ``account``: token, CA, namespace."""
        folder = self.folder / "serviceaccounts" / namespace / account
        if not (folder / "token").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "ca.crt").write_bytes(self.ca_file.read_bytes())
            (folder / "namespace").write_text(namespace)
            (folder / "token").write_text(f"emulator-token-{namespace}-{account}")  # written last: complete
        return folder

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(10)

    def _serve(self) -> None:
        async def main() -> None:
            try:
                _, certificate, key = write_certificates(self.folder)
                tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                tls.load_cert_chain(certificate, key)
                async with Emulator() as emulator, apps.Server(emulator) as server:
                    self.emulator = emulator
                    self.url = str(server.url).rstrip("/")
                    runner = aiohttp.web.ServerRunner(aiohttp.web.Server(emulator))
                    await runner.setup()
                    await aiohttp.web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
                    self.https_port = int(runner.addresses[0][1])
                    self._loop = asyncio.get_running_loop()
                    self._stopped = asyncio.Event()
                    self._ready.set()
                    try:
                        await self._stopped.wait()
                    finally:
                        await runner.cleanup()
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                raise

        asyncio.run(main())
