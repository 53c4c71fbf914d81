"""Felix's configuration: every parameter of the datastore contract, typed and validated.

Sources, first that sets a value wins: environment ``FELIX_<NAME>`` → config file (INI, any
section) → ``/calico/v1/host/<hostname>/config/<Name>`` → ``/calico/v1/config/<Name>`` →
default. Names are case-insensitive; unknown names are a warning.

Loading is two-phase because the datastore location is itself configuration: ``load_local``
reads env + file (enough to reach etcd and set up logging), ``Config.with_datastore`` adds the
datastore values once the first snapshot is in.
"""

from __future__ import annotations

import configparser
import ipaddress
import logging
import os
import re
import socket
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, TypedDict

log = logging.getLogger(__name__)

DEFAULT_CONFIG_FILE = "/etc/calico/felix.cfg"

# Exit statuses (documented in the README): a supervisor restarts felix on any non-zero exit.
EXIT_FATAL = 1
EXIT_CONFIG_ERROR = 2
EXIT_CONFIG_CHANGED = 3

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "NONE")


class ConfigError(Exception):
    """A bad configuration value; str() is the one line shown to the operator."""


# --- value parsers: each takes the raw string and returns the typed value or raises ValueError
# with the accepted values as its message.

def _str(raw: str) -> str:
    if any(ord(c) < 32 for c in raw):
        raise ValueError("a string without control characters")
    return raw


def _int_between(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            v = int(raw.strip(), 0)
        except ValueError:
            raise ValueError(f"an integer from {lo} to {hi}") from None
        if not lo <= v <= hi:
            raise ValueError(f"an integer from {lo} to {hi}")
        return v
    return parse


def _bool(raw: str) -> bool:
    v = raw.strip().lower()
    if v in ("true", "yes", "on", "1"):
        return True
    if v in ("false", "no", "off", "0"):
        return False
    raise ValueError("true or false")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        for c in choices:
            if raw.strip().lower() == c.lower():
                return c
        raise ValueError("one of " + ", ".join(choices))
    return parse


def _log_level(raw: str) -> str:
    v = raw.strip().upper()
    if v == "WARN":
        v = "WARNING"
    if v not in LOG_LEVELS:
        raise ValueError("one of DEBUG, INFO, WARNING, ERROR, CRITICAL, none")
    return v


def _optional_path(raw: str) -> str | None:
    v = _str(raw).strip()
    if v.lower() in ("none", ""):
        return None
    return v


def _port_list(raw: str) -> tuple[int, ...]:
    if not raw.strip() or raw.strip().lower() == "none":
        return ()
    try:
        ports = tuple(int(p) for p in raw.split(","))
    except ValueError:
        raise ValueError("a comma-separated list of ports 0-65535 (or none)") from None
    if any(not 0 <= p <= 65535 for p in ports):
        raise ValueError("a comma-separated list of ports 0-65535 (or none)")
    return ports


_PREFIX_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_-]{0,7}$")


def _prefix_list(raw: str) -> tuple[str, ...]:
    items = tuple(p.strip() for p in raw.split(","))
    if not items or any(not _PREFIX_RE.match(p) for p in items):
        raise ValueError("a comma-separated list of interface-name prefixes "
                         "(1-8 chars of [a-zA-Z0-9_-], starting with a letter)")
    return items


_ENDPOINT_RE = re.compile(r"^(http|https)://[a-zA-Z0-9.\-]+(:\d{1,5})?$|^(http|https)://\[[0-9a-fA-F:.]+\](:\d{1,5})?$")


def _endpoint_list(raw: str) -> tuple[str, ...] | None:
    if not raw.strip():
        return None
    items = tuple(e.strip().rstrip("/") for e in raw.split(","))
    if any(not _ENDPOINT_RE.match(e) for e in items):
        raise ValueError("a comma-separated list of scheme://host:port (http or https)")
    return items


def _host_port(raw: str) -> str:
    v = raw.strip()
    if not re.match(r"^[a-zA-Z0-9.\-]+:\d{1,5}$|^\[[0-9a-fA-F:.]+\]:\d{1,5}$", v):
        raise ValueError("host:port")
    return v


def _hostname(raw: str) -> str:
    v = raw.strip()
    if not re.match(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]{0,252}$", v):
        raise ValueError("a hostname of [a-zA-Z0-9_.-], 1-253 chars")
    return v


def _listen_host(raw: str) -> str:
    v = raw.strip()
    if not re.match(r"^[a-zA-Z0-9.\-:]+$", v):
        raise ValueError("an IP address or host name")
    return v


def _mark_mask(raw: str) -> int:
    try:
        v = int(raw.strip(), 0)
    except ValueError:
        raise ValueError("a 32-bit mask with at least 2 bits set, e.g. 0xff000000") from None
    if not 0 < v <= 0xFFFFFFFF or bin(v).count("1") < 2:
        raise ValueError("a 32-bit mask with at least 2 bits set, e.g. 0xff000000")
    return v


def _optional_ipv4(raw: str) -> str | None:
    v = raw.strip()
    if v.lower() in ("none", ""):
        return None
    try:
        return str(ipaddress.IPv4Address(v))
    except ValueError:
        raise ValueError("an IPv4 address or none") from None


def _ipv6_support(raw: str) -> str:
    return _choice("auto", "true", "false")(raw)


class EtcdTls(TypedDict):
    ca_file: str | None
    cert_file: str | None
    key_file: str | None


@dataclass(frozen=True)
class Param:
    name: str
    default: str | None  # raw default, parsed like any other value; None = no value
    parse: Callable[[str], object]
    help: str
    live: bool = False  # applies without a restart when changed in the datastore
    secret: bool = False


PARAMS: tuple[Param, ...] = (
    Param("EtcdAddr", "127.0.0.1:2379", _host_port, "etcd host:port (used when EtcdEndpoints is unset)"),
    Param("EtcdScheme", "http", _choice("http", "https"), "scheme for EtcdAddr"),
    Param("EtcdEndpoints", None, _endpoint_list, "comma list of scheme://host:port; overrides EtcdAddr/EtcdScheme"),
    Param("EtcdKeyFile", None, _optional_path, "client key for TLS to etcd", secret=True),
    Param("EtcdCertFile", None, _optional_path, "client certificate for TLS to etcd"),
    Param("EtcdCaFile", None, _optional_path, "CA bundle to verify etcd"),
    Param("FelixHostname", None, _hostname, "this host's name in the datastore (default: the machine's hostname)"),
    Param("InterfacePrefix", "cali", _prefix_list, "comma list of workload interface-name prefixes"),
    Param("DefaultEndpointToHostAction", "DROP", _choice("DROP", "RETURN", "ACCEPT"),
          "what happens to workload→host traffic after the endpoint's outbound policy"),
    Param("DropActionOverride", "DROP", _choice("DROP", "ACCEPT", "LOG-and-DROP", "LOG-and-ACCEPT"),
          "what policy drops do (ACCEPT variants are for debugging only)"),
    Param("StartupCleanupDelay", "30", _int_between(0, 86400), "seconds after first in-sync before stale kernel state is swept"),
    Param("PeriodicResyncInterval", "3600", _int_between(0, 7 * 86400), "seconds between full datastore resyncs (0 = off)"),
    Param("IptablesRefreshInterval", "60", _int_between(0, 86400), "seconds between kernel read-backs that repair drift (0 = off)"),
    Param("IptablesLockTimeoutSecs", "10", _int_between(0, 3600), "seconds to wait for the xtables lock"),
    Param("IptablesBackend", "auto", _choice("auto", "legacy", "nft"), "iptables backend"),
    Param("IptablesMarkMask", "0xff000000", _mark_mask, "packet-mark bits felix may use"),
    Param("MaxIpsetSize", "1048576", _int_between(1, 1 << 27), "maxelem of every ipset"),
    Param("MetadataAddr", "127.0.0.1", _optional_ipv4, "where workload traffic to 169.254.169.254:80 is DNATed (none disables)"),
    Param("MetadataPort", "8775", _int_between(1, 65535), "port for MetadataAddr"),
    Param("IpInIpEnabled", "false", _bool, "whether IP-in-IP is used between hosts"),
    Param("IpInIpMtu", "1440", _int_between(576, 65535), "MTU of the tunnel device"),
    Param("IpInIpTunnelAddr", None, _optional_ipv4, "address of the tunnel device"),
    Param("FailsafeInboundHostPorts", "22", _port_list, "tcp ports always open to the host"),
    Param("FailsafeOutboundHostPorts", "2379,2380,4001,7001", _port_list, "tcp ports always open from the host"),
    Param("LogFilePath", "/var/log/calico/felix.log", _optional_path, "log file (none disables)"),
    Param("LogSeverityScreen", "INFO", _log_level, "stderr log severity (none disables)", live=True),
    Param("LogSeverityFile", "INFO", _log_level, "log file severity (none disables)", live=True),
    Param("LogSeveritySys", "ERROR", _log_level, "syslog severity (none disables)", live=True),
    Param("ReportingIntervalSecs", "30", _int_between(0, 86400), "seconds between liveness reports (0 disables)"),
    Param("ReportingTTLSecs", "90", _int_between(1, 86400), "TTL of the liveness key"),
    Param("EndpointReportingEnabled", "false", _bool, "write per-endpoint status"),
    Param("EndpointReportingDelaySecs", "1", _int_between(0, 3600), "minimum seconds between status writes for one endpoint"),
    Param("PrometheusMetricsEnabled", "false", _bool, "serve Prometheus metrics"),
    Param("PrometheusMetricsHost", "0.0.0.0", _listen_host, "metrics listen address"),
    Param("PrometheusMetricsPort", "9091", _int_between(1, 65535), "metrics port"),
    Param("HealthEnabled", "false", _bool, "serve /liveness and /readiness"),
    Param("HealthHost", "localhost", _listen_host, "health listen address"),
    Param("HealthPort", "9099", _int_between(1, 65535), "health port"),
    Param("IgnoreLooseRPF", "false", _bool, "start even if rp_filter is loose (2)"),
    Param("Ipv6Support", "auto", _ipv6_support, "program IPv6 (auto: if ip6tables works)"),
)

PARAMS_BY_LOWER: Mapping[str, Param] = {p.name.lower(): p for p in PARAMS}

SOURCE_ENV = "environment"
SOURCE_DEFAULT = "default"


@dataclass(frozen=True)
class Setting:
    value: object
    source: str  # where the value came from, for messages and diagnostics
    raw: str | None


class Config:
    """Resolved configuration. Attribute access by parameter name: ``config.LogSeverityScreen``."""

    def __init__(self, settings: Mapping[str, Setting],
                 layers: Mapping[str, Mapping[str, tuple[str, str]]]) -> None:
        self._settings = dict(settings)
        # raw layers kept so the datastore layer can be added later with the same precedence
        self._layers = {k: dict(v) for k, v in layers.items()}

    def __getattr__(self, name: str) -> Any:  # values are typed by each Param's parser
        try:
            return self._settings[name].value
        except KeyError:
            raise AttributeError(name) from None

    def get(self, name: str) -> Any:
        return self._settings[PARAMS_BY_LOWER[name.lower()].name].value

    def source(self, name: str) -> str:
        return self._settings[PARAMS_BY_LOWER[name.lower()].name].source

    def items(self) -> Iterable[tuple[str, Setting]]:
        return self._settings.items()

    @property
    def hostname(self) -> str:
        v = self.FelixHostname
        return str(v) if v else socket.gethostname()

    @property
    def etcd_endpoints(self) -> tuple[str, ...]:
        eps = self.EtcdEndpoints
        if eps:
            return tuple(eps)
        return (f"{self.EtcdScheme}://{self.EtcdAddr}",)

    @property
    def etcd_tls(self) -> EtcdTls:
        return {"ca_file": self.EtcdCaFile, "cert_file": self.EtcdCertFile,
                "key_file": self.EtcdKeyFile}

    def with_datastore(self, host_values: Mapping[str, str], global_values: Mapping[str, str]) -> "Config":
        layers = dict(self._layers)
        layers["host"] = _layer(host_values, f"datastore /calico/v1/host/{self.hostname}/config")
        layers["global"] = _layer(global_values, "datastore /calico/v1/config")
        return _resolve(layers)

    def redacted(self) -> dict[str, str]:
        out = {}
        for p in PARAMS:
            s = self._settings[p.name]
            out[p.name] = "<redacted>" if (p.secret and s.raw) else repr(s.value)
        return out


LAYER_ORDER = ("env", "file", "host", "global")


def _layer(values: Mapping[str, str], source: str) -> dict[str, tuple[str, str]]:
    """Normalise one source to {lower name: (raw, source)}, warning on unknown names."""
    out: dict[str, tuple[str, str]] = {}
    for name, raw in values.items():
        lname = name.lower()
        if lname not in PARAMS_BY_LOWER:
            log.warning("Unknown config parameter %s (from %s) ignored", name, source)
            continue
        out[lname] = (raw, source)
    return out


def _resolve(layers: Mapping[str, Mapping[str, tuple[str, str]]]) -> Config:
    settings: dict[str, Setting] = {}
    for p in PARAMS:
        lname = p.name.lower()
        raw: str | None = p.default
        source = SOURCE_DEFAULT
        for layer in LAYER_ORDER:
            if lname in layers.get(layer, {}):
                raw, source = layers[layer][lname]
                break
        if raw is None:
            settings[p.name] = Setting(None, source, None)
            continue
        try:
            value = p.parse(raw)
        except ValueError as e:
            raise ConfigError(
                f"invalid value {raw!r} for {p.name} (from {source}): expected {e}") from None
        settings[p.name] = Setting(value, source, raw)
    return Config(settings, layers)


def read_config_file(path: str) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    except configparser.Error as e:
        first = str(e).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid INI: {first}") from None
    values: dict[str, str] = {}
    for section in parser.sections():
        for name, raw in parser.items(section):
            values[name] = raw
    return values


def env_values(environ: Mapping[str, str]) -> dict[str, str]:
    return {k[len("FELIX_"):]: v for k, v in environ.items()
            if k.startswith("FELIX_") and k[len("FELIX_"):].lower() in PARAMS_BY_LOWER}


def load_local(config_file: str | None, environ: Mapping[str, str] | None = None) -> Config:
    """Env + file + defaults. ``config_file`` None means the default path, which may be absent;
    an explicitly named file must exist."""
    environ = os.environ if environ is None else environ
    file_values: dict[str, str] = {}
    if config_file is None:
        if os.path.exists(DEFAULT_CONFIG_FILE):
            config_file = DEFAULT_CONFIG_FILE
    if config_file is not None:
        file_values = read_config_file(config_file)
    layers = {
        "env": _layer(env_values(environ), SOURCE_ENV),
        "file": _layer(file_values, f"config file {config_file}"),
    }
    return _resolve(layers)


def changed_params(old: Config, new: Config) -> list[str]:
    return [p.name for p in PARAMS if old.get(p.name) != new.get(p.name)]
