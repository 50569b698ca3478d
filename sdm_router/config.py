"""Settings: one YAML file plus environment overrides (prefix ``SDM_ROUTER_``, ``__`` nesting).

Nothing here reads the environment at import time: :func:`load_settings` builds a ``Settings`` in
``main.py`` (or a test) and the object is passed down.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from sdm_router.core.errors import ConfigurationError
from sdm_router.core.routing import (
    OnAbstain,
    OnBreach,
    OnOod,
    OnOodPrompt,
    OnUnverified,
    StreamMode,
)
from sdm_router.core.verdict import Estimator

EMBEDDED_CONFIG = Path(__file__).parent / "configs" / "embedded.yaml"
PACKAGED_ARTIFACTS = Path(__file__).parent / "artifacts"  # the shipped verifier artifacts
ENV_PREFIX = "SDM_ROUTER_"
ENV_NESTING = "__"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    """HTTP server limits and access control."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_body_bytes: int = Field(4_000_000, ge=1024)
    max_concurrency: int = Field(64, ge=1)
    graceful_shutdown_seconds: float = Field(
        20.0, gt=0, description="after the drain delay: how long in-flight requests may finish"
    )
    drain_delay_seconds: float = Field(
        5.0,
        ge=0,
        description="SIGTERM: /readyz answers 503 at once, new connections are still accepted "
        "for this long (so load balancers notice), then refused",
    )
    sse_keepalive_seconds: float = Field(
        15.0,
        ge=0,
        description="a stream whose answer is not ready yet opens and sends ': ping' this often "
        "(0: never; the stream opens once the answer is verified)",
    )
    request_timeout_seconds: float = Field(300.0, gt=0)
    keep_alive_seconds: float = Field(
        75.0,
        gt=0,
        description="an idle client connection is kept open this long; longer than the idle "
        "timeout of the load balancer in front (60 s for most), so the gateway never closes "
        "a connection the balancer is about to reuse",
    )
    max_header_bytes: int = Field(
        32768,
        ge=1024,
        description="the request line and headers of one request, in bytes (431 past it, an "
        "unfinished head included, so a client cannot hold more)",
    )
    max_header_count: int = Field(100, ge=8, description="headers of one request (431 past it)")
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="a request's head must arrive whole this long after its first byte (or "
        "after the connection opened): then 408 (closed without a word when nothing came)",
    )
    body_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="a request's body must arrive whole this long after its head: then 408 "
        "(or the connection closed, once a response has started)",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="open client connections per worker process; one more is closed as it is "
        "accepted, before any byte is read",
    )

    @model_validator(mode="before")
    @classmethod
    def _keys_moved(cls, data: Any) -> Any:
        """``server.api_keys`` / ``server.admin_api_keys`` (plain keys) became ``auth.keys`` /
        ``auth.admin_keys`` (named, hashed, with routes and limits): refuse them clearly."""
        if isinstance(data, dict):
            for old, new in (("api_keys", "keys"), ("admin_api_keys", "admin_keys")):
                if old in data:
                    raise ValueError(
                        f"server.{old} was replaced by auth.{new}: give each key a name and "
                        "its SHA-256 (sha256: <hex>) or an environment reference "
                        "(key: os.environ/NAME); see docs/security.md"
                    )
        return data


class TimeoutSettings(_Section):
    """Per-call upstream timeouts in seconds; ``total`` bounds a whole call including streaming."""

    connect: float = Field(
        5.0, gt=0, description="to open a connection, or to wait for a free one in the pool"
    )
    read: float = Field(60.0, gt=0, description="between two reads of the response")
    total: float = Field(
        120.0, gt=0, description="one whole call: every attempt, the pauses between, the stream"
    )


class RetrySettings(_Section):
    """Retries of one upstream call: only after a connect error, or a status in
    ``retry_statuses``, before the first byte of a good response (never mid-stream). Pauses
    grow exponentially with jitter, or follow the upstream's ``retry-after``; none ends past
    the request's deadline or the call's ``timeouts.total`` (then the error is returned)."""

    max_attempts: int = Field(3, ge=1, description="attempts per call, the first included")
    backoff_initial: float = Field(0.1, ge=0, description="seconds before the first retry")
    backoff_max: float = Field(2.0, ge=0, description="the longest pause, jitter included")
    jitter: float = Field(0.1, ge=0, description="up to this many random seconds added")
    retry_after_max: float = Field(
        10.0, ge=0, description="a longer upstream retry-after is not waited for: the call fails"
    )
    retry_statuses: frozenset[int] = Field(
        frozenset({429, 500, 502, 503, 504}), description="upstream statuses that are retried"
    )


class CircuitBreakerSettings(_Section):
    """One backend's circuit breaker: after ``failure_threshold`` consecutive failed calls
    (timeouts, connection errors, 429, 5xx, unreadable replies; a call is all its attempts)
    calls are refused at once (the cascade moves on to the next tier) for ``open_seconds``; then
    one probe call decides: success closes the circuit, failure opens it again."""

    enabled: bool = True
    failure_threshold: int = Field(5, ge=1, description="consecutive failed calls that open it")
    open_seconds: float = Field(10.0, gt=0, description="how long it stays open before a probe")


class OpenAIBackendSettings(_Section):
    """Any OpenAI-compatible ``/v1`` server: vLLM, llama.cpp server, a hosted API."""

    type: Literal["openai"]
    base_url: str
    model: str = Field(description="the model name the upstream expects")
    api_key: SecretStr | None = None
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)
    max_connections: int = Field(256, ge=1, description="pooled keep-alive connections, at most")
    top_logprobs: int = Field(0, ge=0, le=20)
    retries: RetrySettings = Field(default_factory=RetrySettings)
    circuit_breaker: CircuitBreakerSettings = Field(default_factory=CircuitBreakerSettings)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def model_identity(self) -> str:
        """Which model answers: the upstream's model name (what an artifact records it was
        calibrated on, ``metadata.sdmRouter.calibratedOn``)."""
        return self.model


class LocalBackendSettings(_Section):
    """A causal LM run in-process on torch: ``source: embedded`` is the packaged SmolLM2-135M."""

    type: Literal["local"]
    source: str = "embedded"
    device: str = "auto"
    max_batch_size: int = Field(8, ge=1)
    max_wait_ms: float = Field(5.0, ge=0)
    max_new_tokens: int = Field(512, ge=1)
    max_queued_rows: int = Field(256, ge=1)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    threads: int | None = Field(None, ge=1, description="torch threads (default: one per CPU)")
    cache_dir: Path | None = None

    @property
    def model_identity(self) -> str:
        """Which model answers: ``local:<source>`` (``local:embedded`` is the packaged
        SmolLM2-135M-Instruct)."""
        return f"local:{self.source}"


BackendSettings = Annotated[
    OpenAIBackendSettings | LocalBackendSettings, Field(discriminator="type")
]


class TierSettings(_Section):
    """One rung of a route's cascade; ``n > 1`` is best-of-n: sample n, keep the best."""

    backend: str
    n: int = Field(1, ge=1, le=16)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)


DEFAULT_ABSTAIN_MESSAGE = (
    "I can't give an answer I'm confident is correct, so I won't guess. "
    "Please rephrase the question or ask someone who can check it."
)


class RouteSettings(_Section):
    """A named cascade clients select with ``model``."""

    tiers: list[TierSettings] = Field(min_length=1)
    accept_alpha: float = 0.95
    estimator: Estimator = Estimator.LOWER
    retrieval: bool = False
    max_backend_calls: int = Field(6, ge=1)
    on_abstain: OnAbstain = OnAbstain.MESSAGE
    abstain_message: str = DEFAULT_ABSTAIN_MESSAGE
    stream_mode: StreamMode = StreamMode.VERIFY_THEN_STREAM
    description: str = ""
    verify_tool_calls: bool = Field(
        True, description="judge a tool call as the text name(arguments); false: unverified"
    )
    on_unverified: OnUnverified = Field(
        OnUnverified.ABSTAIN, description="an unverified answer (tool calls): pass | abstain"
    )
    drop_params: bool = Field(
        False, description="drop request parameters a tier's backend cannot honour (else 400)"
    )
    on_ood: OnOod = Field(
        OnOod.RETRIEVE,
        description="after an out-of-distribution answer: retrieve (retrieve first when a "
        "retriever is configured, then the next tier, as for any failed verdict) | escalate "
        "(the next tier, no retrieval) | strongest (the last tier) | abstain",
    )
    prompt_routing: bool = Field(
        True,
        description="route before generating with verifier.prompt_router (when one is "
        "configured and built for this route's tiers): skip the tiers it is sure fail, abstain "
        "at once (predicted_unanswerable) when it is sure every tier fails; on | off",
    )
    skip_alpha: float = Field(
        0.95,
        description="how sure the prompt router must be that a tier fails (its lower region "
        "alpha) before the tier is skipped",
    )
    on_ood_prompt: OnOodPrompt = Field(
        OnOodPrompt.CASCADE,
        description="a prompt the router finds out of distribution: cascade (from tier 0, as "
        "without routing) | strongest (start at the last tier) | abstain",
    )
    on_breach: OnBreach = Field(
        OnBreach.ALERT,
        description="when the live guarantee reads breached: alert | tighten (raise the "
        "effective accept_alpha step by step until the bound holds) | rollback (the "
        "autopilot's; without it, observe mode)",
    )

    @field_validator("accept_alpha", "skip_alpha")
    @classmethod
    def _alpha_in_open_interval(cls, value: float) -> float:
        if not 0.5 < value < 1.0:
            raise ValueError(f"must lie in the open interval (0.5, 1), got {value}")
        return value


class EmbeddingModelSettings(_Section):
    """A model ``/v1/embeddings`` serves: proxied to an OpenAI-compatible backend."""

    backend: str = Field(description="an openai-type backend that serves /embeddings")
    model: str | None = Field(None, description="the upstream model name (default: the backend's)")


class VerifierSettings(_Section):
    """The SDM verifier: artifact, encoder, and the batching worker that owns the device."""

    type: Literal["sdm"] = "sdm"
    artifact: Path | None = Field(
        None,
        description="the .sdmkitmodel to verify with; none: every route starts in observe mode "
        "(answers served unverified and recorded, decision observed) until one is loaded",
    )
    encoder_backend: str | None = Field(
        None, description="a local backend whose weights the encoder shares"
    )
    encoder_model: Path | None = Field(None, description="a causal LM folder on local disk")
    recorded_states: bool = Field(
        True,
        description="with `encoder_backend` and a `last+answer` artifact, the backend records "
        "the artifact's layer while it generates and the verifier reads it instead of a second "
        "forward pass (answers whose tokens differ are encoded); false: always encode",
    )
    device: str = "auto"
    max_batch_size: int = Field(32, ge=1)
    max_wait_ms: float = Field(2.0, ge=0)
    max_nearest_exemplars: int = Field(25, ge=0, le=1000)
    direct_accept_alpha: float = 0.95
    prompt_router: Path | None = Field(
        None,
        description="a prompt router folder (`sdm-router router build`): routes with "
        "prompt_routing on skip the tiers it is sure fail before generating",
    )
    shadow: Path | None = Field(
        None,
        description="a candidate artifact that scores every served answer off the response "
        "path; its would-be decisions go to the decision store (`verifier compare`)",
    )
    shadow_queue: int = Field(
        64, ge=1, description="verifier batches the shadow may lag behind before it skips one"
    )
    artifact_roots: list[Path] | None = Field(
        None,
        description="folders whose artifacts `POST /admin/verifier/reload` may name (symlinks "
        "resolved; any other path is refused alike, existing or not); default: the folder "
        "holding `artifact` (without one: the shipped artifacts' folder)",
    )

    def reload_roots(self) -> tuple[Path, ...]:
        """The folders an admin reload may name an artifact in (``artifact_roots``, else the
        folder holding ``artifact``, else the one holding the shipped artifact)."""
        if self.artifact_roots is not None:
            return tuple(self.artifact_roots)
        return (self.artifact.parent if self.artifact is not None else PACKAGED_ARTIFACTS,)

    @field_validator("direct_accept_alpha")
    @classmethod
    def _alpha_in_open_interval(cls, value: float) -> float:
        return RouteSettings._alpha_in_open_interval(value)

    @model_validator(mode="after")
    def _one_encoder(self) -> VerifierSettings:
        if (self.encoder_backend is None) == (self.encoder_model is None):
            raise ValueError("set exactly one of encoder_backend and encoder_model")
        if self.shadow is not None and self.artifact is None:
            raise ValueError("shadow: a candidate is compared with the live artifact; set artifact")
        return self


LabelledDecision = Literal["accept", "abstain", "observed", "unverified"]
DEFAULT_LABELLED_DECISIONS: tuple[LabelledDecision, ...] = ("accept", "abstain", "observed")


class LabelingSettings(_Section):
    """Labels without a person: a judge model labels a sample of the recorded answers off the
    request path (docs/labeling.md)."""

    judge: str = Field(description="the configured backend that judges answers")
    kind: Literal["judge", "reference"] = Field(
        "judge",
        description="judge: the judge decides whether the answer is correct; reference: the "
        "route's strongest tier answers too, and the judge compares the two",
    )
    sample_rate: float = Field(0.1, ge=0, le=1, description="the share of decisions labelled")
    calls_per_minute: int = Field(
        60, ge=1, description="the judge's budget (reference answers count as calls too)"
    )
    decisions: list[LabelledDecision] = Field(
        default_factory=lambda: list(DEFAULT_LABELLED_DECISIONS),
        description="which decisions are sampled",
    )
    queue_size: int = Field(
        1000, ge=1, description="answers waiting for the judge; a full queue drops (counted)"
    )
    concurrency: int = Field(4, ge=1, le=64, description="judge calls in flight at once")
    max_attempts: int = Field(
        3, ge=1, le=10, description="tries per answer when the judge fails (then dropped)"
    )
    max_tokens: int = Field(
        24, ge=1, le=512, description="the judge's reply: the verdict word and a short reason"
    )


class GuaranteeSettings(_Section):
    """The live guarantee: labelled accepted answers against each route's accept_alpha
    (core/guarantee.py, docs/guarantee.md)."""

    confidence: float = Field(
        0.90, gt=0.5, lt=1, description="of the one-sided lower bound (holding)"
    )
    breach_confidence: float = Field(
        0.99, gt=0.5, lt=1, description="of the one-sided upper bound (breached)"
    )
    margin: float = Field(
        0.03, ge=0, lt=0.5, description="holding: the lower bound >= accept_alpha - margin"
    )
    window: int = Field(
        500, ge=1, description="the newest labelled accepted answers of a route that count"
    )
    refresh_seconds: float = Field(
        15.0, gt=0, description="how often the guarantee is read, published and acted on"
    )
    tighten_step: float = Field(
        0.01, gt=0, le=0.1, description="on_breach: tighten raises accept_alpha by this"
    )


class AutopilotSettings(_Section):
    """The autopilot: builds or updates the verifier from labelled traffic, gates it on held-out
    labelled rows, promotes it to every replica and rolls it back when its guarantee breaks
    (docs/autopilot.md). Every replica sharing the store follows the registry's live artifact
    while this section is enabled."""

    enabled: bool = Field(False, description="run the loop (one replica, by lease) and follow")
    run_in: Literal["serve", "separate"] = Field(
        "serve",
        description="serve: a replica of `sdm-router serve` runs the loop (the one holding the "
        "lease); separate: only `sdm-router autopilot` runs it",
    )
    folder: Path | None = Field(
        None, description="where artifacts are written (default: <state dir>/artifacts)"
    )
    min_labels: int = Field(
        200, ge=1, description="new labelled decisions (text kept) that start a build"
    )
    min_accepted: int = Field(
        20, ge=1, description="held-out labelled rows the candidate must accept to be promoted"
    )
    min_lower_bound: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="the one-sided Clopper-Pearson lower bound on the candidate's held-out "
        "accepted precision it needs (default: accept_alpha - 0.10)",
    )
    confidence: float = Field(0.90, gt=0.5, lt=1, description="of that lower bound")
    held_out: float = Field(
        0.2, gt=0, lt=1, description="the share of conversation groups held out for the gate"
    )
    support: float = Field(
        0.4, gt=0, lt=1, description="the share of groups trained on (the rest calibrates)"
    )
    interval_seconds: float = Field(60.0, gt=0, description="how often the loop looks for labels")
    poll_seconds: float = Field(
        10.0, gt=0, le=20, description="how often each replica reads the registry's live artifact"
    )
    lease_seconds: float = Field(
        120.0, gt=0, description="the lease's life; renewed every interval and during a build"
    )

    def artifacts_folder(self) -> Path:
        """``folder``, else ``<state dir>/artifacts``."""
        return self.folder or default_state_dir() / "artifacts"

    @model_validator(mode="after")
    def _parts_fit(self) -> AutopilotSettings:
        if self.held_out + self.support >= 1:
            raise ValueError("held_out + support must leave a share for calibration")
        return self


class RetrievalSettings(_Section):
    """The document store behind RETRIEVE."""

    type: Literal["faiss"] = "faiss"
    corpus: str = Field(
        "embedded-facts", description="'embedded-facts' or a JSONL file of passages"
    )
    embedding_model: str = "embedded"
    top_k: int = Field(3, ge=1, le=20)
    min_score: float = Field(0.4, ge=-1, le=1)
    device: str = "cpu"


class ObservabilitySettings(_Section):
    """Logging switches. Prompt and response text stay out of logs unless ``log_prompts``."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    json_logs: bool = True
    log_prompts: bool = False


STATE_ENV = "SDM_ROUTER_STATE_DIR"


def default_state_dir() -> Path:
    """``$SDM_ROUTER_STATE_DIR``, else ``~/.local/state/sdm-router``."""
    from_env = os.environ.get(STATE_ENV)
    return Path(from_env).expanduser() if from_env else Path.home() / ".local/state/sdm-router"


class StorageSettings(_Section):
    """The decision store: one record per request, feedback labels on them."""

    enabled: bool = True
    url: SecretStr | None = Field(
        None, description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db (default: SQLite)"
    )
    path: Path | None = Field(
        None, description="SQLite file (default: <state dir>/decisions.sqlite3)"
    )
    keep_text: bool = Field(False, description="also store the conversation and the answers")
    retention_days: float | None = Field(30.0, gt=0, description="None keeps records forever")
    queue_size: int = Field(10_000, ge=1)
    batch_size: int = Field(200, ge=1)
    flush_interval_ms: float = Field(200.0, gt=0)

    def sqlalchemy_url(self) -> str:
        """The URL to connect to: ``url``, else the SQLite file."""
        if self.url is not None:
            return self.url.get_secret_value()
        path = self.path or default_state_dir() / "decisions.sqlite3"
        return f"sqlite:///{path}"


ENV_REFERENCE = "os.environ/"


def _from_environment(reference: str, field: str) -> str:
    """The value of the variable an ``os.environ/NAME`` reference names (read at load time)."""
    name = reference.removeprefix(ENV_REFERENCE)
    value = os.environ.get(name)
    if not name or value is None:
        raise ValueError(f"{field}: environment variable {name!r} is not set")
    if not value.strip():
        raise ValueError(f"{field}: environment variable {name!r} is empty")
    return value.strip()


class KeyLimitSettings(_Section):
    """A key's budgets (unset: unlimited); see docs/security.md."""

    rpm: int | None = Field(None, ge=1, description="requests per minute")
    tpm: int | None = Field(
        None, ge=1, description="tokens per minute: prompt + completion, as the backends count"
    )
    in_flight: int | None = Field(None, ge=1, description="requests in flight at once (a replica)")


class ApiKeySettings(_Section):
    """One API key: a name (logged; the key never is), its SHA-256, what it may use, its limits."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,63}$")
    sha256: str | None = Field(
        None, repr=False, description="hex SHA-256 of the key, or os.environ/NAME holding it"
    )
    key: str | None = Field(None, description="os.environ/NAME: a variable holding the plain key")
    routes: list[str] | None = Field(None, description="routes it may request (default: all)")
    models: list[str] | None = Field(
        None,
        description="direct models (backend names) and embedding models it may request "
        "(default: all)",
    )
    limits: KeyLimitSettings = Field(default_factory=KeyLimitSettings)
    _digest: bytes = PrivateAttr(b"")

    @property
    def digest(self) -> bytes:
        """The key's SHA-256 (32 bytes)."""
        return self._digest

    @model_validator(mode="after")
    def _one_secret(self) -> ApiKeySettings:
        if (self.sha256 is None) == (self.key is None):
            raise ValueError("set exactly one of sha256 (the key's SHA-256) and key")
        if self.key is not None:
            if not self.key.startswith(ENV_REFERENCE):
                raise ValueError(
                    "key must be an environment reference os.environ/NAME; a plain key does not "
                    "belong in a config file (give its SHA-256 as sha256 instead)"
                )
            plain = _from_environment(self.key, "key")
            self._digest = hashlib.sha256(plain.encode()).digest()
            return self
        assert self.sha256 is not None
        hexdigest = self.sha256
        if hexdigest.startswith(ENV_REFERENCE):
            hexdigest = _from_environment(hexdigest, "sha256")
        hexdigest = hexdigest.lower()
        if len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
            raise ValueError(
                'sha256 must be 64 hex digits: python -c "import hashlib;'
                "print(hashlib.sha256(b'sk-...').hexdigest())\""
            )
        self._digest = bytes.fromhex(hexdigest)
        return self


PublicPath = Literal["/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json"]
DEFAULT_PUBLIC_PATHS: tuple[PublicPath, ...] = ("/healthz", "/readyz")


class AuthSettings(_Section):
    """API keys. With none configured (the local default) every endpoint is open."""

    keys: list[ApiKeySettings] = Field(default_factory=list, description="keys for /v1/*")
    admin_keys: list[ApiKeySettings] = Field(
        default_factory=list,
        description="keys for /admin/* (and /metrics and the API docs unless public); "
        "they open /v1/* too, within their routes, models and limits",
    )
    public_paths: list[PublicPath] = Field(
        default_factory=lambda: list(DEFAULT_PUBLIC_PATHS),
        description="paths open without a key while keys are configured",
    )

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (else nothing needs one)."""
        return bool(self.keys or self.admin_keys)

    @model_validator(mode="after")
    def _distinct(self) -> AuthSettings:
        names: set[str] = set()
        digests: set[bytes] = set()
        for section, entries in (("keys", self.keys), ("admin_keys", self.admin_keys)):
            for index, entry in enumerate(entries):
                if entry.name in names:
                    raise ValueError(f"{section}.{index}.name: {entry.name!r} is already used")
                if entry.digest in digests:
                    raise ValueError(f"{section}.{index}: the same key is configured twice")
                names.add(entry.name)
                digests.add(entry.digest)
        return self


class LimitsSettings(_Section):
    """Where per-key limits are counted: in process (default) or in Redis, shared by replicas."""

    redis_url: SecretStr | None = Field(
        None,
        description="redis://[:password@]host:port/db (or rediss://, async+redis://): count "
        "requests and tokens in Redis, shared by every replica",
    )
    redis_timeout_seconds: float = Field(0.25, gt=0, description="a slower Redis call has failed")
    redis_retry_seconds: float = Field(
        5.0, gt=0, description="after a Redis failure, count in process this long, then retry"
    )
    key_prefix: str = Field("sdm-router", pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    redis_batch: int = Field(
        32,
        ge=1,
        le=10_000,
        description="in Redis, far from a key's limits: a replica takes up to this many of its "
        "requests in one call (at most 1/20 of what the minute has left) and adds its token "
        "spends every redis_flush_seconds; near the limits every request and spend is one call. "
        "1: always one call each (exact everywhere, three round trips a request)",
    )
    redis_flush_seconds: float = Field(
        0.1,
        gt=0,
        le=5,
        description="in Redis, far from a key's tpm (under 90 % used as the replica sees it): "
        "how long its spent tokens wait on the replica before they are added in Redis",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        schemes = ("redis://", "rediss://", "unix://")
        if value is not None and not value.get_secret_value().removeprefix("async+").startswith(
            schemes
        ):
            raise ValueError("must start with redis://, rediss:// or unix:// (async+ allowed)")
        return value


class Settings(BaseSettings):
    """The whole gateway configuration."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_NESTING, extra="forbid"
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    backends: dict[str, BackendSettings] = Field(min_length=1)
    verifier: VerifierSettings
    retrieval: RetrievalSettings | None = None
    routes: dict[str, RouteSettings] = Field(min_length=1)
    default_route: str = "auto"
    embeddings: dict[str, EmbeddingModelSettings] = Field(
        default_factory=dict, description="the models /v1/embeddings serves, by client name"
    )
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    labeling: LabelingSettings | None = Field(
        None, description="a judge labels a sample of the answers (off when absent)"
    )
    guarantee: GuaranteeSettings = Field(
        default_factory=GuaranteeSettings,
        description="the live guarantee: labelled accepted answers against accept_alpha",
    )
    autopilot: AutopilotSettings = Field(
        default_factory=AutopilotSettings,
        description="build, gate, promote and roll back the verifier from labelled traffic",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the YAML file, which arrives as init kwargs.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _references_resolve(self) -> Settings:
        for route_name, route in self.routes.items():
            if route_name in self.backends:
                raise ValueError(f"routes.{route_name}: a route cannot share a backend's name")
            for index, tier in enumerate(route.tiers):
                if tier.backend not in self.backends:
                    raise ValueError(
                        f"routes.{route_name}.tiers.{index}.backend: unknown backend "
                        f"{tier.backend!r} (known: {sorted(self.backends)})"
                    )
            if route.retrieval and self.retrieval is None:
                raise ValueError(f"routes.{route_name}.retrieval: no retrieval section configured")
        if self.default_route not in self.routes:
            raise ValueError(f"default_route: {self.default_route!r} is not a configured route")
        for model_name, embedding in self.embeddings.items():
            if not isinstance(self.backends.get(embedding.backend), OpenAIBackendSettings):
                raise ValueError(
                    f"embeddings.{model_name}.backend: {embedding.backend!r} is not an openai "
                    f"backend (openai backends: "
                    f"{sorted(n for n, b in self.backends.items() if b.type == 'openai')})"
                )
        encoder_backend = self.verifier.encoder_backend
        if encoder_backend is not None:
            backend = self.backends.get(encoder_backend)
            if not isinstance(backend, LocalBackendSettings):
                raise ValueError(
                    f"verifier.encoder_backend: {encoder_backend!r} is not a local backend"
                )
        return self

    @model_validator(mode="after")
    def _labeling_resolves(self) -> Settings:
        if self.labeling is None:
            return self
        if self.labeling.judge not in self.backends:
            raise ValueError(
                f"labeling.judge: unknown backend {self.labeling.judge!r} "
                f"(known: {sorted(self.backends)})"
            )
        if not self.storage.enabled:
            raise ValueError("labeling: labels go to the decision store (storage.enabled)")
        return self

    @model_validator(mode="after")
    def _autopilot_resolves(self) -> Settings:
        if not self.autopilot.enabled:
            return self
        if not self.storage.enabled:
            raise ValueError("autopilot.enabled: the registry lives in the store (storage.enabled)")
        if not self.storage.keep_text:
            raise ValueError(
                "autopilot.enabled: the autopilot trains on the answers' text (storage.keep_text)"
            )
        return self

    @model_validator(mode="after")
    def _key_scopes_resolve(self) -> Settings:
        sections = (("keys", self.auth.keys), ("admin_keys", self.auth.admin_keys))
        models = {*self.backends, *self.embeddings}  # direct models and embedding models
        for section, entries in sections:
            for index, entry in enumerate(entries):
                for field, known in (("routes", set(self.routes)), ("models", models)):
                    for name in getattr(entry, field) or ():
                        if name not in known:
                            raise ValueError(
                                f"auth.{section}.{index}.{field}: unknown {field[:-1]} {name!r} "
                                f"(known: {sorted(known)})"
                            )
        return self


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Make relative file paths in a config file relative to that file's folder."""
    verifier = data.get("verifier")
    if isinstance(verifier, dict):
        for key in ("artifact", "encoder_model", "prompt_router"):
            value = verifier.get(key)
            if isinstance(value, str) and not Path(value).is_absolute():
                verifier[key] = str((base / value).resolve())
        roots = verifier.get("artifact_roots")
        if isinstance(roots, list):
            verifier["artifact_roots"] = [
                str((base / root).resolve())
                if isinstance(root, str) and not Path(root).is_absolute()
                else root
                for root in roots
            ]
    autopilot = data.get("autopilot")
    if isinstance(autopilot, dict):
        folder = autopilot.get("folder")
        if isinstance(folder, str) and not Path(folder).is_absolute():
            autopilot["folder"] = str((base / folder).resolve())
    retrieval = data.get("retrieval")
    if isinstance(retrieval, dict):
        for key in ("corpus", "embedding_model"):
            value = retrieval.get(key)
            if isinstance(value, str) and value.endswith((".jsonl", "/")) and value[0] != "/":
                retrieval[key] = str((base / value).resolve())


def environment_name(location: Sequence[str | int]) -> str:
    """The environment variable that overrides a field, e.g. ``SDM_ROUTER_SERVER__PORT``."""
    return ENV_PREFIX + ENV_NESTING.join(str(part).upper() for part in location)


def _origin_of(location: Sequence[str | int], origin: str) -> str:
    """The environment variable that set the field (or one of its parents), else ``origin``."""
    for end in range(len(location), 0, -1):
        name = environment_name(location[:end])
        if name in os.environ:
            return f"environment variable {name}"
    return origin


def format_validation_error(error: ValidationError, origin: str) -> str:
    """One line per problem, each naming the dotted field path and where its value came from."""
    problems = error.errors()
    sources = {_origin_of(problem["loc"], origin) for problem in problems}
    lines = [f"invalid configuration in {' and '.join(sorted(sources))}:"]
    for problem in problems:
        location = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        source = _origin_of(problem["loc"], origin)
        suffix = f" (from {source})" if len(sources) > 1 and source != origin else ""
        lines.append(f"  {location}: {problem['msg']}{suffix}")
    return "\n".join(lines)


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read the YAML file at ``path`` (default: the embedded config) and apply env overrides."""
    config_path = path or EMBEDDED_CONFIG
    try:
        text = config_path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigurationError(f"cannot read config file {config_path}: {error}") from error
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ConfigurationError(f"config file {config_path} is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ConfigurationError(f"config file {config_path} must hold a mapping at the top level")
    _resolve_paths(data, config_path.parent)
    data.update(overrides)
    try:
        return Settings(**data)
    except ValidationError as error:
        raise ConfigurationError(format_validation_error(error, str(config_path))) from error
