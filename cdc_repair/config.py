"""Typed settings: one YAML file plus `CDC_REPAIR_*` environment overrides, validated in one pass.

`load_settings(path)` returns `Settings` or raises `ConfigError` whose `problems` list names **every**
problem at once, each as `path: what is wrong (the fix)`. Passwords never appear in a problem.

Environment overrides: `CDC_REPAIR_<KEY>__<KEY>...=value` (`__` separates levels, list items by index),
e.g. `CDC_REPAIR_STATE__DSN`, `CDC_REPAIR_VALIDATOR__SETTLE_DELAY_S=2`, `CDC_REPAIR_PAIRS__0__STRATEGY`.
Values are parsed as YAML scalars. String values may reference `${VAR}` or `${VAR:-default}`.

Three modules, one per step: `config_file.py` makes the raw mapping (YAML, `${VAR}`, overrides),
`config_checks.py` checks what crosses fields (names, columns, cron), and this one holds the typed sections,
validates them with pydantic and words its errors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from cdc_repair.config_checks import semantic_problems
from cdc_repair.config_file import raw_config
from cdc_repair.db.dsn import Dsn, mask, parse_dsn
from cdc_repair.errors import ConfigError

Scalar = str | int | float | bool | None


def _to_dsn(value: Any) -> Dsn:
    if isinstance(value, Dsn):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a DSN string like mysql://user:password@host:3306/database")
    return parse_dsn(value)


DsnField = Annotated[Dsn, BeforeValidator(_to_dsn)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class ServerConfig(_Model):
    """A MySQL/MariaDB server holding one side of a pair (or both)."""

    dsn: DsnField


class StateConfig(_Model):
    """The service's own schema: checkpoint, ledger, repair log, scan progress, job runs."""

    dsn: DsnField


class StartPosition(_Model):
    file: str | None = None
    pos: int | None = None
    gtid: str | None = None
    timestamp: float | None = None


class CaptureConfig(_Model):
    """One binlog source: which server to tail as a replica, and which tables."""

    server: str
    server_id: int = Field(4242, ge=1, le=2**32 - 1)
    include: list[str] = Field(default_factory=lambda: ["*.*"])
    exclude: list[str] = Field(default_factory=list)
    start: Literal["current", "earliest"] | StartPosition = "current"
    on_purged: Literal["fail", "resume_and_full_validate"] = "fail"
    on_partial_image: Literal["fail", "skip_and_full_validate"] = "fail"
    heartbeat_s: float = Field(1.0, gt=0)
    max_batch_rows: int = Field(2000, ge=1)
    # Canal never mixes transactions in one FlatMessage; true groups rows of consecutive transactions (throughput)
    group_across_transactions: bool = False
    enum_set: Literal["index", "label"] = "index"  # Canal: ENUM index, SET bitmask; label: member names
    partition_hash: Literal["database_and_key", "key"] = "database_and_key"  # canal.mq.database.hash true/false


class TopicConfig(_Model):
    mode: Literal["single", "per_table"] = "single"
    name: str = "cdc-repair.rows"
    prefix: str = "cdc-repair."


class ProducerConfig(_Model):
    acks: Literal["all", "1", "0", -1, 0, 1] = "all"
    linger_ms: int = Field(5, ge=0)
    batch_size: int = Field(262144, ge=1)
    compression_type: Literal["none", "gzip", "lz4", "snappy", "zstd"] = "none"
    request_timeout_ms: int = Field(30000, ge=1)
    max_request_size: int = Field(1024 * 1024, ge=1024)  # Apache Kafka's default message.max.bytes, ~1 MB


class ConsumerConfig(_Model):
    group_id: str = "cdc-repair-validator"
    session_timeout_ms: int = Field(6000, ge=1000)
    heartbeat_interval_ms: int = Field(2000, ge=100)
    max_poll_interval_ms: int = Field(30000, ge=1000)
    max_poll_records: int = Field(2000, ge=1)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"


class KafkaConfig(_Model):
    bootstrap_servers: list[str] = Field(min_length=1)
    topic: TopicConfig = TopicConfig()
    partitions: int = Field(3, ge=1)
    replication_factor: int = Field(1, ge=1)
    producer: ProducerConfig = ProducerConfig()
    consumer: ConsumerConfig = ConsumerConfig()
    dead_letter_topic: str = "cdc-repair.dlq"
    # False for a broker whose reported end offsets are wrong (the embedded tansu reports the last batch's first
    # offset + 1): consumer lag is then shown as "unknown" instead of a wrong number.
    end_offsets_exact: bool = True


class TableRef(_Model):
    server: str
    table: str  # schema.table

    @property
    def schema_name(self) -> str:
        return self.table.split(".", 1)[0]

    @property
    def table_name(self) -> str:
        return self.table.split(".", 1)[1]


Expectation = Literal["equal", "exists", "absent", "if_exists", "none"]


class RuleConfig(_Model):
    """First matching rule wins. `when` matches source-row columns (empty: always; absent source: never)."""

    when: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    expect: Expectation
    columns: list[str] | None = None  # compared with the source; None: the pair's compare columns
    target_values: dict[str, Scalar] = Field(default_factory=dict)  # fixed values the target must hold


class NormalizeConfig(_Model):
    trim: bool = False
    float_digits: int | None = Field(None, ge=0, le=17)
    timestamp_precision: int | None = Field(None, ge=0, le=6)
    time_zone: str | None = None


PUBLISH_COLUMNS: tuple[str, ...] = ("author_id", "title", "content", "status")
"""What a published article must equal online (DESIGN "publish contract"); ctime/utime are stamped separately."""

PUBLISH_RULES: tuple[RuleConfig, ...] = (
    RuleConfig(when={"status": 2}, expect="equal"),
    RuleConfig(when={"status": 3}, expect="if_exists", columns=[], target_values={"status": 3}),
    RuleConfig(when={"status": 1}, expect="none"),
)


class PairConfig(_Model):
    """A source table, a target table, a key, and the rules that say when they agree."""

    name: str
    kind: Literal["publish", "mirror", "custom"] = "custom"
    source: TableRef
    target: TableRef
    key: list[str] = Field(default_factory=lambda: ["id"], min_length=1)
    columns: list[str] | None = None  # declared table columns: lets check-config verify names offline
    compare: list[str] | None = None  # default compared columns; None: all declared columns but key/ignore
    ignore: list[str] = Field(default_factory=list)
    rules: list[RuleConfig] | None = None  # None: the kind's default rules
    orphans: Literal["delete", "ignore"] = "delete"
    normalize: NormalizeConfig = NormalizeConfig()
    strategy: Literal["forward", "compensate"] | None = None
    utime_column: str | None = "utime"

    def effective_rules(self) -> list[RuleConfig]:
        """The rules in force: explicit ones, or the kind's default (publish contract, or mirror)."""
        if self.rules is not None:
            return list(self.rules)
        if self.kind == "publish":
            return list(PUBLISH_RULES)
        return [RuleConfig(expect="equal")]

    def compare_columns(self, table_columns: list[str] | None = None) -> list[str]:
        """Columns compared by default: `compare`; else, for `kind: publish`, the publish contract's columns
        (`PUBLISH_COLUMNS`, never ctime/utime); else all columns but key and ignored ones."""
        if self.compare is not None:
            return list(self.compare)
        skip = set(self.key) | set(self.ignore)
        cols = list(PUBLISH_COLUMNS) if self.kind == "publish" else (table_columns or self.columns or [])
        return [c for c in cols if c not in skip]

    def compare_summary(self) -> dict[str, Any]:
        """The effective compared columns, for `check-config`: `compare` is the list, or None when it is every
        column of the table but `not_compared` (known only once the table is read)."""
        cols = self.compare_columns()
        if cols or self.compare is not None or self.kind == "publish" or self.columns:
            return {"name": self.name, "kind": self.kind, "key": list(self.key), "compare": cols,
                    "not_compared": None}
        return {"name": self.name, "kind": self.kind, "key": list(self.key), "compare": None,
                "not_compared": list(dict.fromkeys([*self.key, *self.ignore]))}


class FullScanConfig(_Model):
    chunk_rows: int = Field(1000, ge=10)
    chunk_time_target_s: float = Field(0.5, gt=0)
    max_chunk_rows: int = Field(50000, ge=10)
    max_threads_running: int = Field(25, ge=1)
    max_rows_per_s: float | None = Field(None, gt=0)


class ValidatorConfig(_Model):
    settle_delay_s: float = Field(1.0, ge=0)
    recheck_delay_s: float = Field(0.5, ge=0)
    rechecks: int = Field(2, ge=0)
    batch_max_keys: int = Field(500, ge=1)
    full_scan: FullScanConfig = FullScanConfig()


class BackoffConfig(_Model):
    initial_s: float = Field(1.0, gt=0)
    max_s: float = Field(300.0, gt=0)
    multiplier: float = Field(2.0, ge=1)
    jitter: float = Field(0.2, ge=0, le=1)


class RepairConfig(_Model):
    strategy: Literal["forward", "compensate"] = "forward"
    rate_limit_per_s: float | None = Field(None, gt=0)
    max_attempts: int = Field(8, ge=1)
    backoff: BackoffConfig = BackoffConfig()
    busy_threads_running: int = Field(25, ge=1)
    batch_size: int = Field(100, ge=1)
    auto_repair: bool = True
    claim_timeout_s: float = Field(300.0, gt=0)  # an unregistered worker's claim older than this is taken over
    dead_after_s: float = Field(30.0, gt=0)  # a run without a heartbeat for this long is dead: claims taken over
    threads: int = Field(2, ge=1, le=16)  # batches applied concurrently (own connections; disjoint keys)


class SchedulerConfig(_Model):
    timezone: str = "UTC"
    full_scan_cron: str = "0 3 * * *"
    window_scan_interval_s: float = Field(300, gt=0)
    retry_interval_s: float = Field(10, gt=0)
    cleanup_cron: str = "30 4 * * *"
    retention_days: int = Field(14, ge=1)
    lag_check_interval_s: float = Field(15, gt=0)
    misfire_grace_s: int = Field(300, ge=1)


class WebConfig(_Model):
    enabled: bool = True
    bind: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535)


class HaConfig(_Model):
    lock_name: str = "cdc-repair-leader"
    lock_retry_s: float = Field(2.0, gt=0)


class LogConfig(_Model):
    format: Literal["auto", "text", "json"] = "auto"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Settings(_Model):
    servers: dict[str, ServerConfig] = Field(min_length=1)
    state: StateConfig
    capture: list[CaptureConfig] = Field(default_factory=list)
    kafka: KafkaConfig
    pairs: list[PairConfig] = Field(min_length=1)
    validator: ValidatorConfig = ValidatorConfig()
    repair: RepairConfig = RepairConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    web: WebConfig = WebConfig()
    ha: HaConfig = HaConfig()
    log: LogConfig = LogConfig()

    def pair(self, name: str) -> PairConfig:
        for p in self.pairs:
            if p.name == name:
                return p
        raise ConfigError([f"pairs: no pair named '{name}' (pairs: {', '.join(p.name for p in self.pairs)})"])

    def server_dsn(self, server: str) -> Dsn:
        return self.servers[server].dsn


# ---------------------------------------------------------------- loading


def load_settings(path: str | Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, interpolate, override from the environment, and validate; raise ConfigError with every problem."""
    raw, problems = raw_config(Path(path), os.environ if environ is None else environ)
    return settings_from_mapping(raw, problems)


def settings_from_mapping(raw: Any, problems: list[str] | None = None) -> Settings:
    problems = list(problems or [])
    if not isinstance(raw, dict):
        raise ConfigError([*problems, "(top level): expected a mapping of sections (servers, state, kafka, pairs)"])
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_describe(err, raw) for err in exc.errors())
    problems.extend(semantic_problems(raw))
    if problems or settings is None:
        raise ConfigError(sorted(dict.fromkeys(problems), key=_path_order))
    return settings


# ---------------------------------------------------------------- messages


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _loc_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif str(part).startswith(("function-", "literal[", "str", "int", "float", "bool", "list", "dict",
                                   "StartPosition", "none")):
            continue  # union-branch labels from pydantic, not user-visible paths
        else:
            path = _join(path, str(part))
    return path or "(top level)"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: Any = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part)) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        candidates = [ann, *args]
        for arg in list(args):
            candidates.extend(getattr(arg, "__args__", ()))
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _describe(err: Any, raw: Any) -> str:
    loc = tuple(err["loc"])
    path = _loc_path(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent else "see config/example.yaml"
        return f"{path}: unknown key '{loc[-1]}' (allowed here: {allowed})"
    if kind == "missing":
        return f"{path}: required key is missing (see config/example.yaml)"
    msg = mask(str(err["msg"]))
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    got = err.get("input")
    shown = "" if isinstance(got, (dict, list)) or "dsn" in path else f" (got {got!r})"
    return f"{path}: {msg}{shown}"


def _path_order(problem: str) -> str:
    return problem.split(":", 1)[0]
