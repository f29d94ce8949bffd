"""The settings tree and how it is loaded. See ``headwater.config`` for the sources."""

from __future__ import annotations

import functools
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "HEADWATER__"


class ConfigError(ValueError):
    """A setting has an invalid value; the message names the variable or file and the fix."""


def default_home() -> Path:
    """``$HEADWATER__HOME``, else ``~/.headwater``."""
    return Path(os.environ.get(f"{ENV_PREFIX}HOME", "~/.headwater")).expanduser()


class ExecutorSettings(BaseModel):
    default_class: str = Field(
        "headwater.executors.LocalExecutor",
        description="The executor flow.run() uses when none is given: an import path, or a kind ('local-dask').",
    )
    default_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for the default executor."
    )


class EngineSettings(BaseModel):
    executor: ExecutorSettings = Field(
        default_factory=ExecutorSettings, description="The default executor."
    )


class LoggingSettings(BaseModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Level of the 'headwater' logger. Task events are DEBUG."
    )
    format: str = Field(
        "[%(asctime)s] %(levelname)s - %(name)s |%(flow_run)s%(task)s %(message)s",
        description="Log format; %(flow_run)s and %(task)s hold the run's context.",
    )


class ApiSettings(BaseModel):
    url: str = Field("http://127.0.0.1:4200", description="The headwater API server's URL.")
    token: SecretStr | None = Field(None, description="API token sent as a Bearer token.")
    timeout: float = Field(30.0, gt=0, description="Seconds the client waits for an answer to one try of a request.")
    retry_for: float = Field(
        60.0,
        ge=0,
        description="Seconds in all the client keeps trying a request the API did not answer in time or could "
        "not be reached for (GETs and idempotent writes: state writes with a version, heartbeats, log batches, "
        "task-run states, claims), with backoff and a warning in the log; then it gives up (0: no such retries).",
    )


class ContextSettings(BaseModel):
    flow_run_id: str | None = Field(None, description="The flow run this process runs (set by agents).")
    flow_id: str | None = Field(None, description="The flow version of that run (set by agents).")
    claim: str | None = Field(
        None,
        description="The claim the run was deployed under, '<agent id>:<attempt>' (set by agents): every write "
        "the flow-run process makes carries it, and the server refuses one whose claim was superseded.",
    )
    exit_report: Path | None = Field(
        None,
        description="A file the flow-run process writes why it gave up to (the API did not answer, an unexpected "
        "error), for the agent to put into the run's failure message (set by the LocalAgent).",
    )
    image: str | None = Field(None, description="The image the run uses, where there is one.")
    secrets: dict[str, SecretStr] = Field(
        default_factory=dict, description="Local secret values by name (HEADWATER__CONTEXT__SECRETS__NAME)."
    )
    namespace: str | None = Field(None, description="The Kubernetes namespace the run's job runs in (set by agents).")
    job_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels of the Kubernetes job that runs this process (set by the KubernetesAgent); an "
        "environment's next hop carries them, so the agent watches and cleans it up too.",
    )
    service_account: str | None = Field(
        None,
        description="The Kubernetes service account of the job that runs this process (set by the "
        "KubernetesAgent); an environment's next hop gets it when its spec names none.",
    )
    ecs: dict[str, Any] = Field(
        default_factory=dict,
        description="What the FargateAgent's task tells an environment starting a next hop (JSON: cluster, "
        "started_by, tags, region, network_configuration), so the agent watches that task too.",
    )
    second_hop: bool = Field(
        False,
        description=(
            "Set by environments whose execute() starts the flow in another process (a Kubernetes Job, "
            "a Fargate task): load_and_run_flow there calls environment.run(flow) on the already Running run."
        ),
    )


class RunnerSettings(BaseModel):
    """How a flow-run process (``headwater execute flow-run``) talks to the API while it runs."""

    heartbeat_interval: float | Literal["off"] = Field(
        10.0,
        description=(
            "Seconds between the flow-run process's heartbeats; 'off' sends none (the server's recovery "
            "then treats runs longer than server.heartbeat_timeout as lost)."
        ),
    )
    cancel_check_interval: float = Field(
        2.0, gt=0, description="Seconds between checks whether the run was cancelled (a heartbeat counts as one)."
    )
    log_batch_interval: float = Field(
        1.0, gt=0, description="Seconds between sends of batched log records and task-run states to the API."
    )

    @field_validator("heartbeat_interval", mode="before")
    @classmethod
    def _seconds_or_off(cls, value: Any) -> float | str:
        if isinstance(value, str) and value.strip().lower() == "off":
            return "off"
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = 0.0
        if not seconds > 0 or seconds == float("inf"):
            raise ValueError("must be a number of seconds greater than 0, or 'off'")
        return seconds


class FlowsSettings(BaseModel):
    local_storage_directory: Path = Field(
        default_factory=lambda: default_home() / "flows",
        description="Where Local storage keeps flows when no directory is given.",
    )
    default_storage: str = Field(
        "local",
        min_length=1,
        description=(
            "The storage flow.register() keeps a flow in when it has none (and its environment names none): a "
            "storage kind ('local', 's3', ...) or the import path of a Storage class; register()'s extra keyword "
            "arguments are its constructor arguments."
        ),
    )


class ServerSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Address the API server binds.")
    port: int = Field(4200, ge=0, le=65535, description="Port the API server binds (0: any free port).")
    database_url: str | None = Field(
        None, description="sqlite:///path or postgresql://...; default a SQLite file <home>/headwater.db."
    )
    auth: bool | None = Field(
        None, description="Require API tokens; default: required unless bound to a loopback address."
    )
    heartbeat_timeout: float = Field(
        60.0, gt=0, description="Seconds without a heartbeat (or since submission) before a run is recovered."
    )
    max_reschedules: int = Field(3, ge=0, description="Times a lost run is rescheduled before it is Failed.")
    recovery_interval: float = Field(5.0, gt=0, description="Seconds between recovery sweeps.")
    agent_seen_window: float = Field(
        120.0, gt=0, description="An agent seen within this many seconds counts as live (explain)."
    )
    max_claim_wait: float = Field(
        60.0, ge=0, description="Longest a claim call may long-poll; longer requested waits are cut to this."
    )
    max_log_batch: int = Field(1000, ge=1, description="Most log records one request may append (more: 413).")
    max_run_batch: int = Field(
        1000,
        ge=1,
        description="Most flow runs one POST /runs/batch may create (more: 413). A batch is one transaction, "
        "which on SQLite holds the database's write lock while its runs are inserted.",
    )
    max_request_size: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        description="Largest request body in bytes (default 8 MiB); a larger one is refused with 413 before it is "
        "read past the limit, whether it says its Content-Length or is sent chunked.",
    )
    max_parameters_size: int = Field(
        1024 * 1024,
        ge=2,
        description="Largest parameters of one flow run, in bytes of JSON (default 1 MiB); larger ones are 413. "
        "Pass big data by reference (a path or URL), not as a parameter.",
    )
    statement_timeout: float = Field(
        30.0,
        ge=0,
        description="Seconds one SQL statement may run on PostgreSQL before the database cancels it (the request "
        "then answers 503); 0: no limit. SQLite statements are not limited.",
    )
    secrets_key: SecretStr | None = Field(
        None,
        description="The Fernet key that encrypts secrets in the database (Fernet.generate_key()); default a key "
        "file <home>/secrets.key made on first use (mode 0600). Every server of one database needs the same key.",
    )
    prune_older_than: float | None = Field(
        None,
        description="Retention: every prune_interval the server deletes finished runs (with their task runs, logs "
        "and states) that finished longer ago than this — seconds, or 90m, 12h, 30d; unset: keep every run. It "
        "never deletes unfinished runs, and logs a warning naming those due before the window.",
    )
    prune_interval: float = Field(3600.0, gt=0, description="Seconds between the server's retention prunes.")
    prune_batch_size: int = Field(
        1000, ge=1, le=100_000, description="Runs a prune deletes per transaction (claims wait at most one batch)."
    )

    @field_validator("prune_older_than", mode="before")
    @classmethod
    def _window(cls, value: Any) -> Any:
        from headwater.core.durations import parse_duration

        return None if value is None or value == "" else parse_duration(value)


class AgentSettings(BaseModel):
    """How agents claim, heartbeat and stop (``headwater/agent/``)."""

    claim_wait: float = Field(
        30.0,
        ge=0,
        le=300,
        description="Seconds a claim long-polls for work (the server may cut it shorter). A run reaches a waiting "
        "agent as soon as it is created whatever this is; longer waits cost the server fewer requests, and a "
        "stopping agent releases its claim in flight.",
    )
    poll_interval: float = Field(
        1.0, ge=0, description="Least seconds between the starts of two claims that found nothing."
    )
    heartbeat_interval: float = Field(30.0, gt=0, description="Seconds between an agent's heartbeats.")
    max_workers: int = Field(
        10, ge=1, le=100, description="Most flow runs an agent deploys at once (a LocalAgent: runs, one process each)."
    )
    stop_timeout: float = Field(
        30.0, ge=0, description="Seconds a stopping agent waits for what it started before terminating it."
    )
    image_pull_grace: float = Field(
        120.0,
        ge=0,
        description="Seconds a KubernetesAgent lets a run's pod fail to pull its image (ErrImagePull, "
        "ImagePullBackOff) before it ends the run Failed with the pod's reason and deletes its job.",
    )
    cancel_grace: float = Field(
        30.0,
        ge=0,
        description="Seconds an agent lets the process of a Cancelling run end by itself (its running tasks "
        "finish, on_exit runs) before it stops the process and ends the run Cancelled.",
    )
    warm_start: bool = Field(
        True,
        description="A LocalAgent starts each run's process as a fork of a process that imported headwater once "
        "(skipping a fresh interpreter's start and imports); false: a fresh `python -m headwater execute "
        "flow-run` each time (--no-warm).",
    )
    warm_preload: list[str] = Field(
        default_factory=list,
        description="More modules the LocalAgent's warm starter imports once for all runs (e.g. 'pandas'); "
        "none may start a thread at import.",
    )


class DockerSettings(BaseModel):
    """The Docker daemon, image builds and agent containers (``headwater/docker/``)."""

    base_url: str | None = Field(
        None,
        description="The Docker daemon's URL (unix:///var/run/docker.sock, tcp://host:2375); default DOCKER_HOST "
        "or the local socket.",
    )
    build_network: str | None = Field(
        None,
        description="Network mode of the RUN steps of image builds (e.g. 'host' where the daemon has no bridge); "
        "default the daemon's.",
    )
    ca_certificates: Path | None = Field(
        None,
        description="A PEM bundle copied into built images and trusted by pip and Python there (for networks "
        "that intercept TLS); default none.",
    )
    network_mode: str | None = Field(
        "host",
        description="Network mode of the containers the DockerAgent starts; 'host' lets them reach an API server "
        "bound to 127.0.0.1 (the default).",
    )


class KubernetesSettings(BaseModel):
    """Kubernetes jobs that agents and environments create (``headwater/kube/``)."""

    job_ttl: int = Field(
        600,
        ge=0,
        description="ttlSecondsAfterFinished of the jobs headwater creates: seconds a finished job (and its pods, "
        "with their logs) stays before the cluster deletes it.",
    )


class Settings(BaseSettings):
    """Every headwater setting. Each field is a section of ``config.toml``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore", case_sensitive=False
    )

    home: Path = Field(default_factory=default_home, description="headwater's home folder.")
    engine: EngineSettings = Field(default_factory=EngineSettings, description="The engine.")
    logging: LoggingSettings = Field(default_factory=LoggingSettings, description="Logging.")
    api: ApiSettings = Field(default_factory=ApiSettings, description="The API client.")
    context: ContextSettings = Field(default_factory=ContextSettings, description="Run context.")
    flows: FlowsSettings = Field(default_factory=FlowsSettings, description="Flow storage defaults.")
    runner: RunnerSettings = Field(default_factory=RunnerSettings, description="The flow-run process.")
    server: ServerSettings = Field(default_factory=ServerSettings, description="The API server.")
    agent: AgentSettings = Field(default_factory=AgentSettings, description="Agents.")
    docker: DockerSettings = Field(default_factory=DockerSettings, description="Docker.")
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings, description="Kubernetes.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))


class _TomlSource(PydanticBaseSettingsSource):
    """Reads ``<home>/config.toml`` when it exists."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole file

    def __call__(self) -> dict[str, Any]:
        path = config_path()
        if not path.exists():
            return {}
        try:
            return tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {path} can't be read: {exc}; fix or remove it") from exc


def config_path() -> Path:
    """Where the config file is read from: ``<home>/config.toml``."""
    return default_home() / "config.toml"


def _describe(loc: tuple[Any, ...]) -> str:
    path = ".".join(str(p) for p in loc)
    env = ENV_PREFIX + "__".join(str(p).upper() for p in loc)
    section = ".".join(map(str, loc[:-1])) or "top level"
    return f"setting {path} (environment variable {env}, or [{section}] {loc[-1]} in {config_path()})"


def load_settings(**overrides: Any) -> Settings:
    """Build settings from all sources now, with ``overrides`` winning.

    Raises:
        ConfigError: a value is invalid; the message names the variable.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_describe(tuple(e['loc']))}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors()
        )
        raise ConfigError(f"invalid headwater settings: {problems}") from None


@functools.cache
def get_settings() -> Settings:
    """The process's settings, loaded once. Use :func:`reload_settings` after changing them."""
    return load_settings()


def reload_settings() -> Settings:
    """Forget the loaded settings and load them again."""
    get_settings.cache_clear()
    return get_settings()
