"""LocalEnvironment: runs the flow in this process; can also package a flow, encrypted.

The packaging form: ``build(flow)`` returns a new LocalEnvironment holding the
flow serialized (the versioned payload of ``headwater.storage.payload``) and
encrypted and authenticated with Fernet; ``run()`` on it decrypts, loads and
runs the flow. A tampered or wrongly keyed payload is refused.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from headwater.environments.base import Environment

if TYPE_CHECKING:
    from headwater.core.flow import Flow
    from headwater.core.state import State
    from headwater.executors.base import Executor


def _check_key(key: str | bytes) -> bytes:
    raw = key.encode() if isinstance(key, str) else key
    try:
        decoded = base64.urlsafe_b64decode(raw)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != 32:
        raise ValueError(
            "encryption_key must be a Fernet key: 32 url-safe base64-encoded bytes "
            "(make one with cryptography.fernet.Fernet.generate_key())"
        )
    return raw


class LocalEnvironment(Environment):
    """Runs the flow in the flow-run process with ``executor``.

    Args:
        executor: an Executor instance; default the ``engine.executor`` setting.
        labels, on_start, on_exit, metadata: as for :class:`Environment`.
        encryption_key: the Fernet key for :meth:`build`; generated when not given.
        serialized_flow: an encrypted flow (what :meth:`build` stores).
    """

    kind = "local"
    spec_only = ("built",)

    def __init__(
        self,
        executor: Executor | None = None,
        labels: Iterable[str] | None = None,
        on_start: Callable[[], Any] | None = None,
        on_exit: Callable[[], Any] | None = None,
        metadata: dict[str, Any] | None = None,
        encryption_key: str | bytes | None = None,
        serialized_flow: bytes | str | None = None,
    ) -> None:
        from headwater.executors.base import Executor

        super().__init__(labels=labels, on_start=on_start, on_exit=on_exit, metadata=metadata)
        if executor is not None and not isinstance(executor, Executor):
            raise TypeError(
                f"LocalEnvironment executor must be a headwater Executor (e.g. LocalDaskExecutor()), "
                f"not {type(executor).__name__}; for an import path use RemoteEnvironment"
            )
        self._executor = executor
        self.encryption_key = _check_key(encryption_key) if encryption_key is not None else None
        if isinstance(serialized_flow, str):
            serialized_flow = serialized_flow.encode()
        self.serialized_flow = serialized_flow

    @property
    def executor(self) -> Executor | None:
        return self._executor

    # -- the packaging form -------------------------------------------------------------

    def serialize_flow_to_bytes(self, flow: Flow) -> bytes:
        """The flow as a versioned payload, encrypted and authenticated with this key."""
        from cryptography.fernet import Fernet

        from headwater.storage.payload import flow_to_bytes

        if self.encryption_key is None:
            self.encryption_key = Fernet.generate_key()
        return Fernet(self.encryption_key).encrypt(flow_to_bytes(flow))

    def deserialize_flow_from_bytes(self, data: bytes) -> Flow:
        """Decrypt and load a flow made by :meth:`serialize_flow_to_bytes` with the same key.

        Raises:
            ValueError: no key, another key, or altered bytes (named as such).
        """
        from cryptography.fernet import Fernet, InvalidToken

        from headwater.storage.payload import flow_from_bytes

        if self.encryption_key is None:
            raise ValueError("this LocalEnvironment has no encryption_key to decrypt the flow with")
        try:
            plain = Fernet(self.encryption_key).decrypt(data)
        except InvalidToken:
            raise ValueError(
                "the serialized flow was refused: it was encrypted with another key, or altered "
                "(Fernet authentication failed); build the environment again"
            ) from None
        return flow_from_bytes(plain, source="LocalEnvironment.serialized_flow")

    def build(self, flow: Flow) -> LocalEnvironment:
        """A new LocalEnvironment holding ``flow``, encrypted; every other argument kept."""
        payload = self.serialize_flow_to_bytes(flow)
        return LocalEnvironment(
            executor=self._executor,
            labels=self.labels,
            on_start=self.on_start,
            on_exit=self.on_exit,
            metadata=self.metadata,
            encryption_key=self.encryption_key,
            serialized_flow=payload,
        )

    def run(
        self, flow: Flow | None = None, runner_kwargs: dict[str, Any] | None = None, **kwargs: Any
    ) -> State:
        """Run ``flow``, or (on a built environment, with no flow) the flow it holds.

        ``runner_kwargs`` (and ``kwargs``) go to the flow runner.
        """
        if flow is None:
            if self.serialized_flow is None:
                raise ValueError(
                    "this LocalEnvironment holds no flow: has this environment been built? "
                    "Call env.build(flow) and run the environment it returns, or pass a flow"
                )
            flow = self.deserialize_flow_from_bytes(self.serialized_flow)
        return super().run(flow, **{**(runner_kwargs or {}), **kwargs})

    # -- the spec ---------------------------------------------------------------------------

    def spec_args(self) -> dict[str, Any]:
        """No key and no flow in the spec: the spec is JSON an agent reads, never a secret."""
        return {"built": self.serialized_flow is not None}
