"""Config: types, defaults, validation messages and source precedence (env > file > per-host
datastore > global datastore > default)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from felix import config as cfg
from felix.configdoc import render_example_cfg, render_markdown

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "felix.cfg"
    p.write_text(text)
    return str(p)


def test_defaults_cover_every_parameter() -> None:
    c = cfg.load_local(None, environ={})
    for p in cfg.PARAMS:
        assert c.source(p.name) in ("default", "config file /etc/calico/felix.cfg")
    assert c.InterfacePrefix == ("cali",)
    assert c.IptablesMarkMask == 0xFF000000
    assert c.FailsafeOutboundHostPorts == (2379, 2380, 4001, 7001)
    assert c.etcd_endpoints == ("http://127.0.0.1:2379",)
    assert c.MetadataAddr == "127.0.0.1"


def test_precedence_env_file_host_global_default(tmp_path: Path) -> None:
    path = write(tmp_path, "[any-section]\nreportingttlsecs = 11\nMaxIpsetSize = 22\n")
    local = cfg.load_local(path, environ={"FELIX_REPORTINGTTLSECS": "10"})
    c = local.with_datastore(
        host_values={"ReportingTTLSecs": "12", "MaxIpsetSize": "23", "IpInIpMtu": "1300"},
        global_values={"ReportingTTLSecs": "13", "MaxIpsetSize": "24", "IpInIpMtu": "1301",
                       "MetadataPort": "9000"})
    assert (c.ReportingTTLSecs, c.source("ReportingTTLSecs")) == (10, "environment")
    assert c.MaxIpsetSize == 22 and c.source("MaxIpsetSize").startswith("config file")
    assert c.IpInIpMtu == 1300 and c.source("IpInIpMtu").startswith("datastore /calico/v1/host/")
    assert c.MetadataPort == 9000 and c.source("MetadataPort") == "datastore /calico/v1/config"
    assert c.HealthPort == 9099 and c.source("HealthPort") == "default"


@pytest.mark.parametrize("name,value,accepted", [
    ("LogSeverityScreen", "LOUD", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL, none"),
    ("DefaultEndpointToHostAction", "allow", "one of DROP, RETURN, ACCEPT"),
    ("IptablesBackend", "iptables", "one of auto, legacy, nft"),
    ("MetadataPort", "99999", "an integer from 1 to 65535"),
    ("IptablesMarkMask", "0x1", "a 32-bit mask with at least 2 bits set"),
    ("FailsafeInboundHostPorts", "22,ssh", "a comma-separated list of ports"),
    ("InterfacePrefix", "cali,-j", "interface-name prefixes"),
    ("EtcdEndpoints", "127.0.0.1:2379", "scheme://host:port"),
    ("HealthEnabled", "maybe", "true or false"),
    ("MetadataAddr", "metadata.local", "an IPv4 address or none"),
])
def test_bad_values_name_parameter_value_accepted_and_source(tmp_path: Path, name: str, value: str,
                                                             accepted: str) -> None:
    path = write(tmp_path, f"[global]\n{name} = {value}\n")
    with pytest.raises(cfg.ConfigError) as e:
        cfg.load_local(path, environ={})
    msg = str(e.value)
    assert name in msg and repr(value) in msg and accepted in msg and path in msg
    assert "\n" not in msg


def test_bad_datastore_value_names_its_key() -> None:
    local = cfg.load_local(None, environ={"FELIX_FELIXHOSTNAME": "h1"})
    with pytest.raises(cfg.ConfigError, match=r"/calico/v1/host/h1/config"):
        local.with_datastore({"DropActionOverride": "SOMETIMES"}, {})


def test_unknown_names_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, "[global]\nNoSuchThing = 1\n")
    cfg.load_local(path, environ={})
    assert "Unknown config parameter NoSuchThing" in caplog.text


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(cfg.ConfigError, match="does not exist"):
        cfg.load_local(str(tmp_path / "nope.cfg"), environ={})
    with pytest.raises(cfg.ConfigError, match="not valid INI"):
        cfg.load_local(write(tmp_path, "no section header\n"), environ={})


def test_changed_params_and_live_flags() -> None:
    a = cfg.load_local(None, environ={})
    b = a.with_datastore({}, {"LogSeverityScreen": "DEBUG", "MaxIpsetSize": "5"})
    assert cfg.changed_params(a, b) == ["MaxIpsetSize", "LogSeverityScreen"]
    live = {p.name for p in cfg.PARAMS if p.live}
    assert live == {"LogSeverityScreen", "LogSeverityFile", "LogSeveritySys"}


def test_secrets_redacted() -> None:
    c = cfg.load_local(None, environ={"FELIX_ETCDKEYFILE": "/secret/key.pem"})
    assert "/secret/key.pem" not in str(c.redacted())


def test_example_config_is_generated_from_the_table() -> None:
    assert (REPO / "etc" / "felix.cfg").read_text() == render_example_cfg()
    readme = (REPO / "README.md").read_text()
    assert render_markdown() in readme, "README config table is stale: regenerate it"


def _felix(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "felix.main", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_cli_version() -> None:
    from felix import __version__
    r = _felix("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"felix {__version__}"


def test_cli_missing_config_file_one_line_exit_2() -> None:
    r = _felix("--config-file", "/nonexistent/felix.cfg")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["felix: config file /nonexistent/felix.cfg does not exist"]
    assert "Traceback" not in r.stderr


def test_cli_bad_severity_one_line_exit_2(tmp_path: Path) -> None:
    r = _felix("--config-file", write(tmp_path, "[global]\nLogSeverityScreen = LOUD\n"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "LogSeverityScreen" in lines[0] and "'LOUD'" in lines[0]
    assert "Traceback" not in r.stderr


def test_cli_bad_env_value(tmp_path: Path) -> None:
    r = _felix("--config-file", write(tmp_path, "[global]\n"), env={"FELIX_HEALTHPORT": "x"})
    assert r.returncode == 2 and "HealthPort" in r.stderr and "environment" in r.stderr
