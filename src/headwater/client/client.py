"""``Client``: the Python client of the headwater API (sync, one keep-alive connection pool).

Projects, flows, registration, agents, the claim, tokens and health are here;
flow runs, their states, logs and task runs are in ``flow_runs.py``, secrets in
``secrets.py`` (both mixed in).
Answers are parsed into the wire models of ``headwater.schemas``; requests are
sent as plain JSON of the same shape and checked by the server alone, so a value
it refuses comes back as a :class:`~headwater.client.errors.ValidationError`
carrying the server's message, the same for every caller. The routes are ``headwater/server/api/``; the transport
(retries, errors) is ``http.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from pydantic import SecretStr, TypeAdapter

from headwater.client.flow_runs import FlowRunsMixin, segment
from headwater.client.http import Transport
from headwater.client.secrets import SecretsMixin
from headwater.schemas.agents import Agent, ClaimResponse
from headwater.schemas.common import Health
from headwater.schemas.flow_runs import FlowRun
from headwater.schemas.flows import Flow, FlowDetail, FlowMetadata, FlowRegistered
from headwater.schemas.projects import Project
from headwater.schemas.tokens import TokenCreated, TokenInfo

if TYPE_CHECKING:
    from headwater.core.flow import Flow as CoreFlow

_PROJECTS = TypeAdapter(list[Project])
_FLOWS = TypeAdapter(list[Flow])
_AGENTS = TypeAdapter(list[Agent])
_TOKENS = TypeAdapter(list[TokenInfo])


class Client(FlowRunsMixin, SecretsMixin):
    """Talks to a headwater API server.

    Args:
        api_url: the server, e.g. ``http://127.0.0.1:4200``; default the setting
            ``api.url`` (``HEADWATER__API__URL``).
        api_token: the API token; default the setting ``api.token``
            (``HEADWATER__API__TOKEN``). Sent as ``Authorization: Bearer <token>``.
        tries: tries per request on 5xx answers, dropped connections of writes that are not
            idempotent, and a server that refuses the first connection.
        backoff: seconds before the first retry, doubled for each next one (up to a few seconds).
        timeout: seconds to wait for an answer to each try; default the setting ``api.timeout``
            (``HEADWATER__API__TIMEOUT``, 30 s).
        retry_for: seconds in all to keep retrying a GET or an idempotent write the API did not
            answer in time or could not be reached for (``http.py`` says which); default the
            setting ``api.retry_for`` (``HEADWATER__API__RETRY_FOR``, 60 s).
        claim: the claim this client writes under, ``<agent id>:<attempt>`` (sent as the
            ``Headwater-Claim`` header); default the setting ``context.claim``, which an agent
            sets for the flow-run processes it starts. The server refuses (409) a run write
            under a claim that was superseded.

    Use it as a context manager, or call :meth:`close`, to release its connections.
    """

    def __init__(
        self,
        api_url: str | None = None,
        api_token: str | SecretStr | None = None,
        *,
        tries: int = 4,
        backoff: float = 0.1,
        timeout: float | None = None,
        claim: str | None = None,
        retry_for: float | None = None,
    ) -> None:
        if api_url is None or api_token is None or timeout is None or retry_for is None:
            from headwater.config import get_settings

            loaded = get_settings()
            if api_url is None or api_token is None:
                api_url = loaded.api.url if api_url is None else api_url
                api_token = loaded.api.token if api_token is None else api_token
                claim = loaded.context.claim if claim is None else claim
            timeout = loaded.api.timeout if timeout is None else timeout
            retry_for = loaded.api.retry_for if retry_for is None else retry_for
        token = api_token.get_secret_value() if isinstance(api_token, SecretStr) else api_token
        self.timeout = timeout
        #: seconds in all an idempotent request that times out or can't connect is retried.
        self.retry_for = retry_for
        #: the claim sent with every request, or None.
        self.claim = claim
        self._http = Transport(
            api_url, token or None, tries=tries, backoff=backoff, timeout=timeout, claim=claim, retry_for=retry_for
        )

    @property
    def api_url(self) -> str:
        """The URL the routes hang off, e.g. ``http://127.0.0.1:4200/api/v1``."""
        return self._http.base_url

    def __repr__(self) -> str:
        return f"<Client: {self.api_url}>"

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def health(self) -> Health:
        """The server's status, version and database kind (needs no token)."""
        return Health.model_validate(self._http.request("GET", "/health"))

    # -- projects ----------------------------------------------------------------

    def create_project(self, name: str) -> str:
        """Create a project and return its id (ConflictError if the name is taken)."""
        return str(self._http.request("POST", "/projects", json={"name": name})["id"])

    def list_projects(self) -> list[Project]:
        """Every project, by name."""
        return _PROJECTS.validate_python(self._http.request("GET", "/projects"))

    def delete_project(self, project_id: str) -> None:
        """Delete a project with its flows and their runs."""
        self._http.request("DELETE", f"/projects/{segment(project_id)}")

    # -- flows ---------------------------------------------------------------------

    def register(
        self,
        flow: CoreFlow,
        project_name: str,
        build: bool = True,
        labels: Iterable[str] | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Store the flow's code and register its metadata; returns the flow version's id.

        See ``headwater.client.registration.register_flow``.
        """
        from headwater.client.registration import register_flow

        return register_flow(
            flow, project_name, build=build, labels=labels, idempotency_key=idempotency_key, client=self
        )

    def register_flow_metadata(
        self,
        project_name: str,
        metadata: dict[str, Any] | FlowMetadata,
        labels: Iterable[str] | None = None,
        idempotency_key: str | None = None,
    ) -> FlowRegistered:
        """Send a flow's metadata (``flow.serialize()``) to the server as a new version.

        Identical metadata returns the existing version with ``created=False``.
        """
        if isinstance(metadata, FlowMetadata):
            metadata = metadata.model_dump(mode="json")
        body = {
            "project_name": project_name,
            "metadata": metadata,
            "labels": list(labels or ()),
            "idempotency_key": idempotency_key,
        }
        answer = self._http.request("POST", "/flows", json=body, idempotent=idempotency_key is not None)
        return FlowRegistered.model_validate(answer)

    def list_flows(
        self, project_name: str | None = None, name: str | None = None, include_archived: bool = False
    ) -> list[Flow]:
        """Registered flow versions, by project, name and version."""
        params: dict[str, Any] = {"include_archived": include_archived}
        if project_name is not None:
            params["project_name"] = project_name
        if name is not None:
            params["name"] = name
        return _FLOWS.validate_python(self._http.request("GET", "/flows", params=params))

    def get_flow(self, flow_id: str) -> FlowDetail:
        """A flow version with its full metadata."""
        return FlowDetail.model_validate(self._http.request("GET", f"/flows/{segment(flow_id)}"))

    def archive_flow(self, flow_id: str) -> Flow:
        """Archive a flow version: no new runs of it (register again to revive it)."""
        return Flow.model_validate(self._http.request("POST", f"/flows/{segment(flow_id)}/archive"))

    # -- agents --------------------------------------------------------------------

    def register_agent(self, name: str, kind: str, labels: Iterable[str]) -> str:
        """Register (or re-register) the agent of this name and kind; returns its id."""
        body = {"name": name, "kind": kind, "labels": list(labels)}
        return str(self._http.request("POST", "/agents", json=body)["id"])

    def agent_heartbeat(self, agent_id: str) -> Agent:
        """Tell the server the agent is alive."""
        answer = self._http.request("POST", f"/agents/{segment(agent_id)}/heartbeat", idempotent=True)
        return Agent.model_validate(answer)

    def list_agents(self) -> list[Agent]:
        """Every agent, most recently seen first."""
        return _AGENTS.validate_python(self._http.request("GET", "/agents"))

    def claim_flow_runs(
        self, agent_id: str, labels: Iterable[str], limit: int = 1, wait: float = 0.0, claim_id: str | None = None
    ) -> list[FlowRun]:
        """Claim up to ``limit`` due runs these labels match; they come back Submitted to this agent.

        With ``wait`` > 0 the server holds the request until a run is due or
        ``wait`` seconds pass (long-poll), so an empty list means nothing came. Each call
        sends a claim id of its own (``claim_id``, made here when not given), the same on its
        retries, so a claim retried after its answer was lost gets the runs the first try took
        instead of stranding them; :meth:`release_claim` with that id ends the wait early.
        """
        claim_id = claim_id or uuid4().hex
        body = {"agent_id": agent_id, "labels": list(labels), "limit": limit, "wait": wait, "claim_id": claim_id}
        timeout = max(self.timeout, wait + 15.0)
        answer = self._http.request("POST", "/work/claim", json=body, timeout=timeout, idempotent=True)
        return ClaimResponse.model_validate(answer).flow_runs

    def release_claim(self, agent_id: str, claim_id: str) -> None:
        """End the wait of the claim sent with ``claim_id`` now (the agent is stopping).

        That claim answers at once with what it holds: nothing, unless it had taken runs
        already (put them back). A claim not at the server yet is released when it arrives.
        """
        self._http.request("POST", "/work/claim/release", json={"agent_id": agent_id, "claim_id": claim_id},
                           idempotent=True)  # fmt: skip

    # -- tokens --------------------------------------------------------------------

    def create_token(
        self,
        name: str,
        scope: str,
        *,
        agent: str | None = None,
        pool: str | None = None,
        expires_in: float | None = None,
    ) -> TokenCreated:
        """A new API token (needs an admin token); ``.token`` is shown only this once.

        An agent token may be bound to one ``agent`` name or to a ``pool`` of agents; it
        stops working ``expires_in`` seconds from now when given.
        """
        body = {"name": name, "scope": scope, "agent": agent, "pool": pool, "expires_in": expires_in}
        return TokenCreated.model_validate(self._http.request("POST", "/tokens", json=body))

    def list_tokens(self) -> list[TokenInfo]:
        """Every token's id, name, scope, binding and expiry (needs an admin token; never the token itself)."""
        return _TOKENS.validate_python(self._http.request("GET", "/tokens"))

    def revoke_token(self, token_id: str) -> None:
        """Revoke a token by id: refused from the next request on (needs an admin token)."""
        self._http.request("DELETE", f"/tokens/{segment(token_id)}")
