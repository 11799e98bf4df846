"""Configuration: the spec's ``ExperienceSyncConfig``, in Python.

Sources, lowest precedence first (later ones override field by field):

1. the defaults documented here and in ``docs/configuration.md``;
2. ``[tool.experience-sync]`` in ``pyproject.toml`` of the working directory;
3. a TOML file: the ``path`` given to :func:`load_config`, else
   ``$EXPERIENCE_SYNC_CONFIG``, else ``experience-sync.toml`` in the working
   directory if present;
4. ``EXPERIENCE_SYNC_*`` environment variables, nested fields joined by
   ``__`` (``EXPERIENCE_SYNC_STREAMING__INTERVAL_MS=200``), values parsed as
   JSON when they parse, else taken as strings;
5. keyword overrides passed to :func:`load_config`.

Validation happens at load and reports every bad field with its dotted path.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from experience_sync.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ENV_PREFIX = "EXPERIENCE_SYNC_"
#: Environment variables with the prefix that are not configuration fields.
#: ``LANGCHAIN_EMBEDDINGS`` is read by the LangChain adapter's plugin,
#: ``POSTGRES_POOL_SIZE`` by the PostgreSQL store's.
RESERVED_ENV = {
    "CONFIG", "LOAD_PLUGINS", "DISABLE_PLUGIN_AUTOLOAD", "HUB_TOKEN", "DATA_DIR",
    "LANGCHAIN_EMBEDDINGS", "POSTGRES_POOL_SIZE",
}

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Parse ``"90s"``, ``"15m"``, ``"1h"``, ``"1d"``, ``"1h30m"`` or ``"250ms"`` to seconds.

    Anything else (``"soon"``, ``"-1h"``, ``"0s"``, ``""``) raises ``ValueError``.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a duration string such as '15m', got {text!r}")
    s = text.strip().lower()
    pos = 0
    total = 0.0
    for match in _DURATION_RE.finditer(s):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not s or pos != len(s):
        raise ValueError(
            f"{text!r} is not a duration: use a number with a unit ms, s, m, h or d, "
            "such as '90s', '15m', '1h' or '1d'"
        )
    if total <= 0:
        raise ValueError(f"{text!r}: a duration must be greater than zero")
    return total


def is_loopback_host(host: str | None) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address."""
    if not host:
        return False
    if host.lower() in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(
    url: str | None, secure: str, insecure: str, allow_insecure: bool
) -> str | None:
    """``url`` if it is a ``secure://`` URL, or an ``insecure://`` one to loopback.

    Plain ``insecure://`` to another host needs ``allow_insecure``. A config
    section's URL validator calls this, so every transport refuses the same URLs.
    """
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in {secure, insecure} or not parts.hostname:
        raise ValueError(f"{url!r} is not a {secure}:// or {insecure}:// URL")
    if parts.scheme == insecure and not allow_insecure and not is_loopback_host(parts.hostname):
        raise ValueError(
            f"plain {insecure}:// to non-loopback host {parts.hostname!r} is refused; "
            f"use {secure}:// or set allow_insecure_http = true"
        )
    return url


def _insecure_allowed(info: ValidationInfo) -> bool:
    return bool(info.data.get("allow_insecure_http", False))


class ConfigSection(BaseModel):
    """A table of the configuration. A plugin's own section subclasses this.

    Unknown keys are errors and assignments are validated. URL fields named
    in ``_url_fields`` are masked in reprs and in
    :meth:`ExperienceSyncConfig.public_dict`; a transport section that names
    ``endpoint_field`` gets the URL that ``--endpoint`` and
    :func:`~experience_sync.client.manager.with_endpoint` give.
    """

    # defer_build: a section's validator is built when it first validates (in
    # load_config), not when this module is imported.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, defer_build=True)

    #: URL fields whose credentials (userinfo password, token query) are masked in reprs.
    _url_fields: ClassVar[tuple[str, ...]] = ()
    #: The field a hub URL given on the command line sets (transport sections).
    endpoint_field: ClassVar[str | None] = None

    def __repr_args__(self) -> Any:
        extra = self.__pydantic_extra__ or {}
        for key, value in super().__repr_args__():
            if key in self._url_fields and isinstance(value, str):
                value = mask_url(value)
            elif key in extra and isinstance(value, Mapping):
                value = _mask_table(value)
            yield key, value


class HttpsConfig(ConfigSection):
    """``transport.https``: POST to the hub's HTTP API."""

    endpoint_field = "endpoint"

    # Declared before the URL so that the URL's validator can read it and the
    # error names ``transport.https.endpoint`` itself.
    _url_fields = ("endpoint",)

    allow_insecure_http: bool = False
    endpoint: str | None = None
    auth_token: SecretStr | None = None
    # Headers often carry credentials: kept out of reprs, masked by public_dict().
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    verify_tls: bool = True
    timeout: float = Field(default=30.0, gt=0)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None, info: ValidationInfo) -> str | None:
        return check_url(value, "https", "http", _insecure_allowed(info))


class WebSocketConfig(ConfigSection):
    """``transport.websocket``: frames over one long-lived WebSocket."""

    endpoint_field = "url"

    _url_fields = ("url",)

    allow_insecure_http: bool = False
    url: str | None = None
    protocols: list[str] = Field(default_factory=list)
    auth_token: SecretStr | None = None
    window: int = Field(default=16, ge=1, le=1024)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None, info: ValidationInfo) -> str | None:
        return check_url(value, "wss", "ws", _insecure_allowed(info))


class TransportConfig(ConfigSection):
    """``transport``: which registered transport ships events, and its settings.

    A transport plugin's own table (``[transport.mcp]``) is a section it
    registers through ``experience_sync_register_config_sections``.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True, defer_build=True)

    type: str = "https"
    https: HttpsConfig = Field(default_factory=HttpsConfig)
    websocket: WebSocketConfig = Field(default_factory=WebSocketConfig)

    @field_validator("type")
    @classmethod
    def _known_transport(cls, value: str, info: ValidationInfo) -> str:
        return _check_name(value, "transports", info)


class StreamingConfig(ConfigSection):
    """``streaming``: ship high-priority events within ``interval_ms``."""

    enabled: bool = True
    interval_ms: int = Field(default=500, ge=1, le=3_600_000)
    batch_size: int = Field(default=10, ge=1, le=10_000)
    priority_threshold: float = Field(default=0.5, ge=0.0, le=1.0)


class LumpedConfig(ConfigSection):
    """``lumped``: ship accumulated events as one batch every ``batch_interval``."""

    enabled: bool = False
    batch_interval: str = "1h"
    max_batch_size: int = Field(default=1000, ge=1, le=100_000)
    compression: bool | Literal["none", "gzip", "zstd"] = True

    @field_validator("batch_interval")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def interval_seconds(self) -> float:
        """``batch_interval`` in seconds."""
        return parse_duration(self.batch_interval)

    @property
    def codec(self) -> Literal["none", "gzip", "zstd"]:
        """The compression codec: ``true`` means gzip, ``false`` none."""
        if self.compression is True:
            return "gzip"
        if self.compression is False:
            return "none"
        return self.compression


class CheckInConfig(ConfigSection):
    """``check_in``: send the instance's state on a cron ``schedule``."""

    enabled: bool = False
    schedule: str = "0 * * * *"
    include_full_state: bool = True

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter

        if not isinstance(value, str) or not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a valid cron expression")
        return value


#: The ``merge_strategy`` fields that name a plugin, and the registry kind each names.
_MERGE_PLUGIN_FIELDS = {
    "conflict_resolution": "conflict_resolvers",
    "skill_aggregation": "skill_aggregations",
    "similarity_method": "similarity_methods",
    "embedder": "embedders",
    "vector_index": "vector_indexes",
    "judge": "merge_judges",
}


def skill_key(name: str) -> str:
    """How skill aliases are matched: case, spaces, ``_`` and ``-`` do not count."""
    return re.sub(r"[\s_\-]+", " ", name).strip().casefold()


class MergeStrategyConfig(ConfigSection):
    """``merge_strategy``: how the hub merges what instances send."""

    conflict_resolution: str = "latest_wins"
    memory_deduplication: bool = True
    skill_aggregation: str = "max"
    knowledge_verification_threshold: float = Field(default=0.8, ge=0.0, le=1.0)
    similarity_method: str = "jaccard"
    similarity_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    embedder: str = "hashing"
    vector_index: str = "numpy"
    skill_conflict_margin: float = Field(default=0.3, ge=0.0, le=1.0)
    instance_trust: dict[str, float] = Field(default_factory=dict)
    skill_aliases: dict[str, str] = Field(default_factory=dict)
    #: The merge judge of near memory pairs (``rules``: the guards decide, no judge is asked).
    judge: str = "rules"
    #: ``[low, high]`` of the similarity score: the pairs a judge other than ``rules`` decides.
    judge_zone: tuple[float, float] = (0.5, 1.0)
    #: Seconds a judge may take over one pair before the rules decide it.
    judge_timeout: float = Field(default=10.0, gt=0.0, le=3600.0)

    @field_validator("judge_zone")
    @classmethod
    def _zone(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not (0.0 <= low <= 1.0 and 0.0 <= high <= 1.0):
            raise ValueError(f"[low, high] must lie within 0..1, got [{low}, {high}]")
        if low > high:
            raise ValueError(f"low must not exceed high, got [{low}, {high}]")
        return value

    @field_validator("skill_aliases")
    @classmethod
    def _aliases(cls, value: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for alias, canonical in value.items():
            if not skill_key(alias) or not canonical.strip():
                raise ValueError(f"alias {alias!r} -> {canonical!r}: both names must be non-blank")
            if len(canonical) > 500:
                raise ValueError(f"alias {alias!r}: the skill name is longer than 500 characters")
            out[skill_key(alias)] = canonical.strip()
        return out

    def skill_name(self, name: str) -> str:
        """The name a skill is merged under: its alias target, or ``name`` itself."""
        return self.skill_aliases.get(skill_key(name), name)

    @field_validator(*_MERGE_PLUGIN_FIELDS)
    @classmethod
    def _plugin_name(cls, value: str, info: ValidationInfo) -> str:
        return _check_name(value, _MERGE_PLUGIN_FIELDS[str(info.field_name)], info)


class OutboxConfig(ConfigSection):
    """``outbox``: the instance's durable queue of events not yet delivered."""

    data_dir: str | None = None
    max_events: int = Field(default=1_000_000, ge=1)
    when_full: Literal["block", "refuse"] = "block"
    block_timeout: float = Field(default=5.0, ge=0)
    durability: Literal["group", "sync"] = "group"
    group_commit_ms: float = Field(default=5.0, ge=0.1, le=1000)


class RetentionConfig(ConfigSection):
    """``retention``: what the hub drops by age, and whether it compacts logs (hub only).

    ``interactions``: an interaction event older than this (by its own
    timestamp; a duration such as ``"30d"``) loses its payload and context
    in the log. ``memories``: a memory nothing reinforced for this long (its
    ``updated_at``) is forgotten. ``pending_knowledge``: a pending knowledge
    item no instance reported for this long is forgotten (integrated
    knowledge stays). ``compact``: each pass replaces every agent's log by a
    snapshot of its state. ``interval``: how often ``serve`` runs a pass.
    See ``docs/retention.md``.
    """

    interactions: str | None = None
    memories: str | None = None
    pending_knowledge: str | None = None
    compact: bool = False
    interval: str = "1h"

    @field_validator("interactions", "memories", "pending_knowledge", "interval")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @property
    def interactions_seconds(self) -> float | None:
        """``interactions`` in seconds (``None``: kept forever)."""
        return None if self.interactions is None else parse_duration(self.interactions)

    @property
    def memories_seconds(self) -> float | None:
        """``memories`` in seconds (``None``: kept forever)."""
        return None if self.memories is None else parse_duration(self.memories)

    @property
    def pending_knowledge_seconds(self) -> float | None:
        """``pending_knowledge`` in seconds (``None``: kept forever)."""
        return None if self.pending_knowledge is None else parse_duration(self.pending_knowledge)

    @property
    def expires_anything(self) -> bool:
        """Whether some kind has a retention age."""
        return any(v is not None for v in (self.interactions, self.memories, self.pending_knowledge))

    @property
    def interval_seconds(self) -> float:
        """``interval`` in seconds."""
        return parse_duration(self.interval)


class RecallConfig(ConfigSection):
    """``recall``: how searches rank, on the hub and in each instance's replica.

    ``rankers`` run on every search and are fused by weighted reciprocal rank
    fusion (``weights``: ``vector`` 4, others 1; ``rrf_k`` 10, both measured
    on benchmarks/recall_data, see docs/recall.md); ``rerankers`` then reorder
    the fused hits. The ``vector`` ranker matches only when ``embedder`` names
    an embedder, and only documents whose cosine similarity to the query is at
    least ``min_similarity`` (so an unrelated memory never fills a prompt).
    The replica is the instance's local copy of its source agent
    (``replica.db`` beside the outbox), pulled every ``pull_interval`` seconds
    (0: only on ``manager.refresh``) and bounded to ``max_memories`` merged
    memories (the least recently updated leave first).
    """

    rankers: list[str] = Field(default_factory=lambda: ["bm25", "vector"], min_length=1)
    rerankers: list[str] = Field(default_factory=list)
    embedder: str | None = None
    min_similarity: float = Field(default=0.2, ge=-1.0, le=1.0)
    weights: dict[str, float] = Field(default_factory=lambda: {"bm25": 1.0, "vector": 4.0})
    rrf_k: int = Field(default=10, ge=1, le=10_000)
    pull_interval: float = Field(default=2.0, ge=0.0, le=86_400.0)
    max_memories: int = Field(default=100_000, ge=1)

    @field_validator("rankers", "rerankers")
    @classmethod
    def _plugin_names(cls, value: list[str], info: ValidationInfo) -> list[str]:
        kind = "rankers" if info.field_name == "rankers" else "rerankers"
        return [_check_name(v, kind, info) for v in dict.fromkeys(value)]

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        for name, weight in value.items():
            if not (weight >= 0 and weight < float("inf")):
                raise ValueError(f"weight of {name!r} must be a finite number >= 0, got {weight}")
        return value

    @field_validator("embedder")
    @classmethod
    def _embedder(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _check_name(value, "embedders", info)


class ExperienceSyncConfig(ConfigSection):
    """The whole configuration. Field names follow the spec.

    Tables that plugins register (``transport.<name>``, or a top-level
    ``[<name>]``) are validated at load by the section model the plugin
    registered and read with :meth:`section`.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True, defer_build=True)

    enabled: bool = True
    default_protocol: str = "streaming"
    transport: TransportConfig = Field(default_factory=TransportConfig)
    streaming: StreamingConfig = Field(default_factory=StreamingConfig)
    lumped: LumpedConfig = Field(default_factory=LumpedConfig)
    check_in: CheckInConfig = Field(default_factory=CheckInConfig)
    merge_strategy: MergeStrategyConfig = Field(default_factory=MergeStrategyConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    recall: RecallConfig = Field(default_factory=RecallConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)

    @field_validator("default_protocol")
    @classmethod
    def _protocol(cls, value: str, info: ValidationInfo) -> str:
        return _check_name(value, "protocols", info)

    def section(self, path: str, model: type[_S]) -> _S:
        """The plugin section at ``path`` (``"transport.mcp"``) as ``model``.

        The defaults of ``model`` when the configuration has no such table.
        A table given as a plain mapping (a config built without the plugin
        registry) is validated here, and a bad field raises
        :class:`~experience_sync.errors.ConfigError` naming its dotted path.
        """
        parent, key = _section_parent(self, path)
        extra = parent.__pydantic_extra__
        if extra is None:  # pragma: no cover - both parents allow extras
            raise KeyError(path)
        value = extra.get(key)
        if isinstance(value, model):
            return value
        try:
            section = model.model_validate({} if value is None else value)
        except ValidationError as exc:
            raise ConfigError(_located(exc, path)) from None
        extra[key] = section
        return section

    def public_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with every secret masked, for display."""
        data = self.model_dump(mode="json")
        https = data["transport"]["https"]
        https["headers"] = {
            key: MASK if _SECRET_HEADER_RE.search(key) else value
            for key, value in https["headers"].items()
        }
        _mask_urls(self, data)
        return data


_S = TypeVar("_S", bound=ConfigSection)

#: The sections of the core that can hold plugin tables.
_OPEN_SECTIONS = ("", "transport")


def _section_parent(config: ExperienceSyncConfig, path: str) -> tuple[BaseModel, str]:
    head, _, key = path.rpartition(".")
    if head not in _OPEN_SECTIONS or not key:
        raise ValueError(
            f"{path!r}: a plugin section is a top-level table or one under [transport]"
        )
    return (config.transport if head else config), key


def _mask_urls(model: BaseModel, data: dict[str, Any]) -> None:
    """Mask the URL fields of every section under ``model`` in its dump ``data``."""
    fields = getattr(model, "_url_fields", ())
    for key in fields:
        if isinstance(data.get(key), str):
            data[key] = mask_url(data[key])
    children = {name: getattr(model, name) for name in type(model).model_fields}
    children.update(model.__pydantic_extra__ or {})
    for name, child in children.items():
        if isinstance(child, BaseModel) and isinstance(data.get(name), dict):
            _mask_urls(child, data[name])
        elif isinstance(child, Mapping) and isinstance(data.get(name), dict):
            # a plugin table not validated by its model (no registry): mask
            # what looks like a secret or a URL
            data[name] = _mask_table(data[name])


def _mask_table(table: Mapping[str, Any]) -> dict[str, Any]:
    """A raw plugin table with what looks like a secret or a URL masked."""
    return {
        key: MASK if _SECRET_HEADER_RE.search(key)
        else mask_url(value) if isinstance(value, str) and "://" in value
        else value
        for key, value in table.items()
    }


def _located(exc: ValidationError, prefix: str) -> list[tuple[str, str]]:
    errors = []
    for err in exc.errors():
        path = ".".join([prefix, *(str(p) for p in err["loc"])])
        errors.append((path, str(err["msg"]).removeprefix("Value error, ")))
    return errors


def _plugin_sections(config: ExperienceSyncConfig, registry: Any) -> list[tuple[str, str]]:
    """Validate the plugin tables of a loaded config in place; the errors found."""
    known = set(registry.names("config_sections"))
    errors: list[tuple[str, str]] = []
    for head in _OPEN_SECTIONS:
        parent: BaseModel = config.transport if head else config
        extra = parent.__pydantic_extra__ or {}
        for key in list(extra):
            path = f"{head}.{key}" if head else key
            if path not in known:
                if not isinstance(extra[key], Mapping):
                    errors.append((path, "Extra inputs are not permitted"))
                    continue
                installed = ", ".join(sorted(known)) or "none"
                errors.append((path, f"unknown section: no installed plugin provides "
                               f"[{path}] (plugin sections installed: {installed})"))
                continue
            model = registry.get("config_sections", path).factory
            try:
                extra[key] = model.model_validate(extra[key])
            except ValidationError as exc:
                errors.extend(_located(exc, path))
    return errors


MASK = "**********"
_SECRET_HEADER_RE = re.compile(r"auth|token|key|secret|cookie|password|session", re.IGNORECASE)
_SECRET_QUERY_RE = re.compile(
    r"(?i)((?:access_)?token|key|secret|password|signature|sig)=[^&#]*"
)


def mask_url(url: str) -> str:
    """``url`` with a password in the userinfo and token-like query values masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
    query = _SECRET_QUERY_RE.sub(lambda m: f"{m.group(1)}={MASK}", parts.query)
    if netloc == parts.netloc and query == parts.query:
        # Nothing to hide: keep the URL as written (urlunsplit would turn
        # sqlite:///hub.db into sqlite:/hub.db).
        return url
    return parts._replace(netloc=netloc, query=query).geturl()


def _check_name(value: str, kind: str, info: ValidationInfo) -> str:
    registry = (info.context or {}).get("registry") if info.context else None
    if registry is None:
        return value
    names = registry.names(kind)
    if value not in names:
        from experience_sync.plugins import KIND_LABELS

        label = KIND_LABELS.get(kind, kind)
        raise ValueError(f"unknown {label} {value!r} (installed: {', '.join(names) or 'none'})")
    return value


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _wants_text(path: list[str]) -> bool:
    """Whether the field at ``path`` holds text, so ``"123"`` must stay a string."""
    model: type[BaseModel] = ExperienceSyncConfig
    for depth, part in enumerate(path):
        info = model.model_fields.get(part)
        if info is None:
            return False
        annotation = info.annotation
        if depth == len(path) - 1:
            is_union = get_origin(annotation) in (Union, UnionType)
            args = set(get_args(annotation)) if is_union else {annotation}
            return bool(args - {type(None)}) and args <= {str, SecretStr, type(None)}
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return False
        model = annotation
    return False


def _env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :]
        if rest in RESERVED_ENV or not rest:
            continue
        path = [part.lower() for part in rest.split("__")]
        try:
            # a token or schedule such as "12345" stays text
            value: Any = raw if _wants_text(path) else json.loads(raw)
        except ValueError:
            value = raw
        if isinstance(value, (dict, list)) and path[-1] not in {"headers", "protocols", "instance_trust"}:
            value = raw
        node = layer
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[path[-1]] = value
    return layer


def _lookup(tree: Mapping[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a configuration TOML file; a ``[tool.experience-sync]`` table is honoured too."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([("(file)", f"{p} does not exist")], str(p)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([("(file)", f"not valid TOML: {exc}")], str(p)) from None
    tool = data.get("tool", {}).get("experience-sync")
    if isinstance(tool, dict):
        return tool
    if p.name == "pyproject.toml":  # a project without our table configures nothing
        return {}
    return data


def _pyproject_layer(cwd: Path) -> dict[str, Any]:
    path = cwd / "pyproject.toml"
    if not path.is_file():
        return {}
    with path.open("rb") as fh:
        try:
            data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([("(file)", f"not valid TOML: {exc}")], str(path)) from None
    tool = data.get("tool", {}).get("experience-sync", {})
    return tool if isinstance(tool, dict) else {}


def validate_config(
    data: Mapping[str, Any], *, source: str | None = None, check_plugins: bool = True
) -> ExperienceSyncConfig:
    """Validate a mapping into a config; :class:`ConfigError` names every bad field."""
    context: dict[str, Any] = {}
    if check_plugins:
        from experience_sync.plugins import get_plugin_manager

        context["registry"] = get_plugin_manager().registry
    try:
        config = ExperienceSyncConfig.model_validate(dict(data), context=context)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            path = ".".join(str(p) for p in err["loc"]) or "(root)"
            msg = err["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            errors.append((path, msg))
        raise ConfigError(errors, source) from None
    if "registry" in context:
        errors = _plugin_sections(config, context["registry"])
        if errors:
            raise ConfigError(errors, source)
    return config


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    check_plugins: bool = True,
    **overrides: Any,
) -> ExperienceSyncConfig:
    """Load the configuration from every source, in the documented precedence."""
    env = os.environ if environ is None else environ
    where = Path(cwd) if cwd is not None else Path.cwd()
    data: dict[str, Any] = _pyproject_layer(where)
    sources = [str(where / "pyproject.toml")] if data else []
    file_path = path or env.get(ENV_PREFIX + "CONFIG")
    if file_path is None and (where / "experience-sync.toml").is_file():
        file_path = where / "experience-sync.toml"
    if file_path is not None:
        data = _deep_merge(data, read_toml(file_path))
        sources.append(str(file_path))
    env_layer = _env_layer(env)
    if env_layer:
        sources.append("EXPERIENCE_SYNC_* environment")
    data = _deep_merge(data, env_layer)
    data = _deep_merge(data, overrides)
    try:
        return validate_config(
            data, source=", ".join(sources) or None, check_plugins=check_plugins
        )
    except ConfigError as exc:
        if not env_layer:
            raise
        # say which variable a bad value came from: the path alone does not tell
        variables = {
            path: name
            for name in env
            if name.startswith(ENV_PREFIX)
            and (path := ".".join(p.lower() for p in name[len(ENV_PREFIX) :].split("__")))
            # unless a keyword override replaced the variable's value
            and _lookup(data, path) is _lookup(env_layer, path)
        }
        errors = [
            (path, f"{reason} (from {variables[path]})" if path in variables else reason)
            for path, reason in exc.errors
        ]
        raise ConfigError(errors, exc.source) from None
