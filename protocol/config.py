"""The TOML configuration: loaded once into frozen dataclasses (protocol/settings.py, where
every key and default is stated), checked here as a whole.

A bad file never half-loads: ``load_config`` raises ConfigError naming the file, the key and
the reason, and `botvisor run` exits with exit_codes.CONFIG_ERROR. Paths in the file are
relative to the file's own directory. Per-bot keys override the [supervisor] ones of the same
name; a bot's [bots.backoff] overrides [supervisor.backoff] key by key.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import exit_codes
from .appref import is_path_form, split_app
from .cluster_config import ClusterSettings
from .codec import valid_name
from .errors import BotvisorError, SchemaError
from .gateway_config import GatewaySettings, check_webhooks
from .schema import from_mapping
from .settings import (
    INHERITED,
    BotConfig,
    Endpoints,
    MetricsSettings,
    SecuritySettings,
    SimulatedSettings,
    SupervisorSettings,
    WhatsAppSettings,
    split_listen,
)

#: the tables are re-exported: ``from protocol.config import BotConfig`` is how the others import them
__all__ = ["CONFIG_ENV", "DEFAULT_CONFIG_PATH", "MAX_IPC_PATH", "BotConfig", "Config", "ConfigError", "Endpoints",
           "MetricsSettings", "SecuritySettings", "SimulatedSettings", "SupervisorSettings", "WhatsAppSettings",
           "default_config_path", "load_config", "parse_config", "split_listen"]

DEFAULT_CONFIG_PATH = "botvisor.toml"
CONFIG_ENV = "BOTVISOR_CONFIG"
#: a unix socket path longer than this does not fit in sockaddr_un
MAX_IPC_PATH = 100


class ConfigError(BotvisorError):
    exit_code = exit_codes.CONFIG_ERROR

    def __init__(self, file: str | os.PathLike[str], key: str, reason: str) -> None:
        self.file, self.key, self.reason = str(file), key, reason
        where = f"{self.file}: {key}: " if key else f"{self.file}: "
        super().__init__(where + reason)


@dataclass(frozen=True, slots=True)
class _FileSchema:
    supervisor: dict[str, Any] = field(default_factory=dict)
    endpoints: Endpoints = field(default_factory=Endpoints)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    cluster: dict[str, Any] | None = None  # converted on its own, so errors name the key inside it
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    bots: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    supervisor: SupervisorSettings
    endpoints: Endpoints
    metrics: MetricsSettings
    bots: tuple[BotConfig, ...]
    #: directories resolved against the file's directory
    auth_root: Path
    run_dir: Path
    log_dir: Path | None
    #: key paths resolved against the file's directory
    security: SecuritySettings = field(default_factory=SecuritySettings)
    #: None: one host, no database (docs/cluster.md)
    cluster: ClusterSettings | None = None
    #: the HTTP gateway's settings (protocol/gateway_config.py); the supervisor ignores them
    gateway: GatewaySettings = field(default_factory=GatewaySettings)

    def bot(self, bot_id: str) -> BotConfig:
        for bot in self.bots:
            if bot.id == bot_id:
                return bot
        raise KeyError(bot_id)

    def bot_dir(self, bot_id: str) -> Path:
        """``auth/<server>/bot_<id>``: the one directory a bot's worker owns."""
        return self.auth_root / self.supervisor.server_name / f"bot_{bot_id}"

    def endpoint(self, role: str) -> str:
        value = getattr(self.endpoints, role)
        return value if value else f"ipc://{self.run_dir / (role + '.sock')}"


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, validate and resolve the configuration file, or raise ConfigError."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, "", "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "", f"cannot read it: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}") from None
    return parse_config(raw, path)


def parse_config(raw: dict[str, Any], path: Path) -> Config:
    try:
        schema = from_mapping(_FileSchema, raw)
        supervisor = from_mapping(SupervisorSettings, schema.supervisor, "supervisor")
        cluster = None if schema.cluster is None else from_mapping(ClusterSettings, schema.cluster, "cluster")
        bots = tuple(_resolve_bot(supervisor, schema.supervisor, entry, i) for i, entry in enumerate(schema.bots))
    except SchemaError as exc:
        raise ConfigError(path, exc.path, exc.reason) from None
    seen: set[str] = set()
    for i, bot in enumerate(bots):
        if bot.id in seen:
            raise ConfigError(path, f"bots[{i}].id", f"duplicate bot id {bot.id!r}")
        seen.add(bot.id)
    base = path.resolve().parent
    bots = tuple(_resolve_app(bot, base, path) for bot in bots)
    config = Config(
        path=path,
        supervisor=supervisor,
        endpoints=schema.endpoints,
        metrics=schema.metrics,
        bots=bots,
        auth_root=base / supervisor.auth_dir,
        run_dir=base / supervisor.run_dir,
        log_dir=base / supervisor.log_dir if supervisor.log_dir else None,
        security=dataclasses.replace(schema.security, **{
            f.name: str(base / getattr(schema.security, f.name))
            for f in dataclasses.fields(SecuritySettings) if getattr(schema.security, f.name)}),
        cluster=cluster,
        gateway=schema.gateway,
    )
    _check_cluster(config)
    problem = check_webhooks(schema.gateway.webhooks)
    if problem:
        raise ConfigError(path, *problem)
    _check_endpoints(config)
    _check_directories(config)
    _check_security(config)
    return config


def _resolve_bot(supervisor: SupervisorSettings, sup_raw: dict[str, Any], entry: Any, i: int) -> BotConfig:
    where = f"bots[{i}]"
    if not isinstance(entry, dict):
        raise SchemaError(where, f"must be a table, got {type(entry).__name__}")
    if "id" in entry and valid_name(entry["id"]):
        where = f"bots[{i}] ({entry['id']})"
    merged: dict[str, Any] = {key: getattr(supervisor, key) for key in INHERITED}
    merged.update(entry)
    backoff = entry.get("backoff", {})
    if not isinstance(backoff, dict):
        raise SchemaError(f"{where}.backoff", f"must be a table, got {type(backoff).__name__}")
    merged["backoff"] = {**sup_raw.get("backoff", {}), **backoff}
    if "id" not in entry:
        raise SchemaError(f"{where}.id", "missing required key")
    if "app_root" in entry:
        raise SchemaError(f"{where}.app_root", "unknown key (app paths are relative to the config file)")
    bot = from_mapping(BotConfig, merged, where)
    if bot.stale_after <= bot.heartbeat_interval:
        raise SchemaError(f"{where}.heartbeat_timeout",
                          f"{bot.stale_after} s must exceed heartbeat_interval ({bot.heartbeat_interval} s)")
    return bot


def _check_cluster(config: Config) -> None:
    cluster = config.cluster
    if cluster is None:
        for i, bot in enumerate(config.bots):
            if bot.shard is not None:
                raise ConfigError(config.path, f"bots[{i}] ({bot.id}).shard", "a shard pin needs a [cluster] table")
        return
    problem = cluster.problem()
    if problem:
        raise ConfigError(config.path, f"cluster.{problem[0]}", problem[1])
    for i, bot in enumerate(config.bots):
        if bot.shard is not None and bot.shard >= cluster.shards:
            raise ConfigError(config.path, f"bots[{i}] ({bot.id}).shard",
                              f"{bot.shard} is not below shards = {cluster.shards}")
def _resolve_app(bot: BotConfig, base: Path, path: Path) -> BotConfig:
    """A path-form app made absolute; modules are looked up in the config file's directory first."""
    if bot.app is None:
        if bot.app_config:
            raise ConfigError(path, f"bots ({bot.id}).app_config", "set without an app")
        return bot
    target, attribute = split_app(bot.app)
    app = f"{(base / target).resolve()}:{attribute}" if is_path_form(target) else bot.app
    return dataclasses.replace(bot, app=app, app_root=str(base))


def _check_endpoints(config: Config) -> None:
    for spec in dataclasses.fields(Endpoints):
        endpoint = config.endpoint(spec.name)
        scheme, sep, rest = endpoint.partition("://")
        if not sep or scheme not in ("ipc", "tcp", "inproc"):
            raise ConfigError(config.path, f"endpoints.{spec.name}", f"{endpoint!r} is not an ipc:// or tcp:// endpoint")
        if scheme == "ipc" and len(rest) > MAX_IPC_PATH:
            raise ConfigError(
                config.path, f"endpoints.{spec.name}",
                f"ipc path {rest!r} is {len(rest)} characters, over the {MAX_IPC_PATH} a unix socket allows "
                "(set a shorter run_dir)",
            )
        if scheme == "tcp" and spec.name in ("events", "commands"):
            raise ConfigError(config.path, f"endpoints.{spec.name}", "workers talk to the supervisor over ipc:// only")
    from .config_checks import endpoint_clash, endpoint_problem

    roles = {spec.name: config.endpoint(spec.name) for spec in dataclasses.fields(Endpoints)}
    for role, endpoint in roles.items():
        if getattr(config.endpoints, role) and (problem := endpoint_problem(endpoint)):
            raise ConfigError(config.path, f"endpoints.{role}", problem)
    clash = endpoint_clash(roles)
    if clash:
        role, other = clash
        raise ConfigError(config.path, f"endpoints.{role}",
                          f"{roles[role]!r} is also endpoints.{other}: each role needs an endpoint of its own")


def _check_directories(config: Config) -> None:
    from .config_checks import directories, directory_problem

    for key, directory in directories(config).items():
        problem = directory_problem(directory)
        if problem:
            raise ConfigError(config.path, key, problem)


def _check_security(config: Config) -> None:
    """A tcp:// control or tap endpoint is refused unless CURVE keys guard it."""
    exposed = [role for role in ("control", "tap") if config.endpoint(role).startswith("tcp://")]
    if not exposed:
        return
    from .curve import check_keys  # pyzmq only when keys matter

    sec = config.security
    for role in exposed:
        if not (sec.server_key and sec.authorized_keys):
            raise ConfigError(config.path, f"endpoints.{role}",
                              "a tcp:// endpoint needs CURVE keys: set [security] server_key and authorized_keys "
                              "(`botvisor keys generate` writes a key pair)")
    problem = check_keys(sec)
    if problem:
        raise ConfigError(config.path, f"security.{problem[0]}", problem[1])
