"""The Home Assistant add-on (addon/): its files against the format Home Assistant documents
(developers.home-assistant.io, "Add-on configuration": the required and optional keys of
config.yaml with their types, the options/schema types, build.yaml, translations), and the
glue the image runs for it (container/addon.py): options -> the TOML config, discovery.

The Supervisor cannot run here: `validate` below is that page's rules written out, and
discovery is posted to a local HTTP server standing in for the Supervisor's API.
"""

from __future__ import annotations

import http.server
import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import kws_command

from kws_stream import __version__
from kws_stream import config as cfg
from testsupport.net import free_port

ROOT = Path(__file__).resolve().parents[1]
ADDON = ROOT / "addon"
GLUE = ROOT / "container" / "addon.py"

ARCHES = {"armhf", "armv7", "aarch64", "amd64", "i386"}
REQUIRED = {"name": str, "version": str, "slug": str, "description": str, "arch": list}
OPTIONAL: dict[str, type | tuple[type, ...]] = {
    **{k: bool for k in ("host_network", "host_ipc", "host_dbus", "host_pid", "host_uts", "hassio_api",
                         "homeassistant_api", "docker_api", "full_access", "audio", "video", "gpio", "usb",
                         "uart", "udev", "devicetree", "kernel_modules", "stdin", "legacy", "tmpfs", "auth_api",
                         "ingress", "ingress_stream", "panel_admin", "advanced", "init", "realtime", "journald")},
    **{k: str for k in ("url", "startup", "webui", "boot", "homeassistant", "hassio_role", "image", "codenotary",
                        "ingress_entry", "panel_icon", "panel_title", "backup", "backup_pre", "backup_post",
                        "stage", "watchdog")},
    **{k: list for k in ("machine", "devices", "privileged", "map", "discovery", "services", "backup_exclude",
                         "breaking_versions")},
    **{k: dict for k in ("ports", "ports_description", "environment", "options", "ulimits")},
    "apparmor": (bool, str), "schema": (dict, bool), "timeout": int, "ingress_port": int,
}
CHOICES = {"startup": {"initialize", "system", "services", "application", "once"},
           "boot": {"auto", "manual", "manual_only"}, "stage": {"stable", "experimental", "deprecated"},
           "backup": {"hot", "cold"}, "hassio_role": {"default", "homeassistant", "backup", "manager", "admin"}}
# the schema's value types: str/int/float with an optional (min,max), and the rest
SCALAR = re.compile(r"^(?:(?:str|int|float)(?:\((-?[\d.]*),(-?[\d.]*)\))?|bool|email|url|password|port"
                    r"|match\(.+\)|list\([^|()]+(?:\|[^|()]+)*\)|device(?:\(.+\))?)\??$")


def validate(config: dict[str, Any]) -> list[str]:
    """What is wrong with an add-on config.yaml, by the documented format; [] when nothing."""
    errors = [f"missing required key {k!r}" for k in REQUIRED if k not in config]
    for key, value in config.items():
        kind = REQUIRED.get(key) or OPTIONAL.get(key)
        if kind is None:
            errors.append(f"unknown key {key!r}")
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            errors.append(f"{key!r} is {type(value).__name__}, the format says {kind}")
        elif key in CHOICES and value not in CHOICES[key]:
            errors.append(f"{key!r} is {value!r}, not one of {sorted(CHOICES[key])}")
    if not re.fullmatch(r"[a-z0-9_]+", str(config.get("slug", ""))):
        errors.append("slug must be URI friendly: lower-case letters, digits and _")
    errors += [f"unknown arch {a!r}" for a in config.get("arch", []) if a not in ARCHES]
    for port, host in (config.get("ports") or {}).items():
        if not re.fullmatch(r"\d{1,5}/(tcp|udp)", str(port)) or not (host is None or isinstance(host, int)):
            errors.append(f"ports: {port!r}: {host!r} is not 'container-port/type': host-port or null")
    errors += [f"ports_description: {p!r} is no port" for p in config.get("ports_description") or {}
               if p not in (config.get("ports") or {})]
    schema, options = config.get("schema") or {}, config.get("options") or {}
    if isinstance(schema, dict):
        for key, spec in schema.items():
            errors += [f"schema {key!r}: {e}" for e in check_spec(spec, depth=1)]
            if key in options:
                errors += [f"option {key!r}: {e}" for e in check_value(options[key], spec)]
            elif not str(spec).endswith("?") and not isinstance(spec, (list, dict)):
                errors.append(f"option {key!r} is required by the schema but has no default in options")
        errors += [f"option {k!r} is not in the schema" for k in options if k not in schema]
    return errors


def check_spec(spec: Any, depth: int) -> list[str]:
    if depth > 2:
        return ["nested deeper than two levels"]
    if isinstance(spec, list):
        return ["a list schema holds one element type"] if len(spec) != 1 else check_spec(spec[0], depth + 1)
    if isinstance(spec, dict):
        return [e for s in spec.values() for e in check_spec(s, depth + 1)]
    return [] if isinstance(spec, str) and SCALAR.match(spec) else [f"unsupported type {spec!r}"]


def check_value(value: Any, spec: Any) -> list[str]:
    """The option's default against its schema type (the Supervisor refuses to start otherwise)."""
    if isinstance(spec, list):
        return [] if isinstance(value, list) and not [e for v in value for e in check_value(v, spec[0])] \
            else [f"{value!r} is not a list of {spec[0]}"]
    if isinstance(spec, dict):
        return [e for k, s in spec.items() if k in value for e in check_value(value[k], s)]
    spec = spec.rstrip("?")
    if spec.startswith("list("):
        return [] if value in spec[5:-1].split("|") else [f"{value!r} is not one of {spec}"]
    base, _, bounds = spec.partition("(")
    kinds = {"str": str, "int": int, "float": (int, float), "bool": bool, "port": int}
    if base in kinds and (not isinstance(value, kinds[base]) or (base != "bool" and isinstance(value, bool))):
        return [f"{value!r} is not {base}"]
    if bounds and base in ("int", "float"):
        low, high = (float(b) if b else None for b in bounds.rstrip(")").split(","))
        if (low is not None and value < low) or (high is not None and value > high):
            return [f"{value!r} is outside {spec}"]
    return []


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((ADDON / name).read_text())


def test_config_yaml_has_the_documented_keys_and_types() -> None:
    config = load("config.yaml")
    assert validate(config) == []
    assert config["arch"] == ["amd64", "aarch64"]
    assert "wyoming" in config["discovery"]
    assert "10400/tcp" in config["ports"]
    assert config["version"] == __version__  # the image's version is the add-on's


@pytest.mark.parametrize("broken, complaint", [
    ({"slug": None}, "missing required key 'slug'"),
    ({"arch": ["x86_64"]}, "unknown arch 'x86_64'"),
    ({"startup": "always"}, "'startup' is 'always'"),
    ({"ports": {"10400": None}}, "ports: '10400'"),
    ({"discover": ["wyoming"]}, "unknown key 'discover'"),
    ({"options": {"model": "micronet-l", "mode": "command", "threshold": 2, "keywords": [], "log_level": "info"}},
     "option 'threshold': 2 is outside float(0.01,1)"),
    ({"options": {"model": "micronet-s", "mode": "command", "threshold": 0.7, "keywords": [], "log_level": "info"}},
     "option 'model': 'micronet-s' is not one of"),
    ({"schema": {"model": "text", "mode": "str", "threshold": "float", "keywords": ["str"], "log_level": "str"}},
     "schema 'model': unsupported type 'text'"),
])
def test_the_check_refuses_what_the_format_forbids(broken: dict[str, Any], complaint: str) -> None:
    config = {**load("config.yaml"), **broken}
    config = {k: v for k, v in config.items() if v is not None}
    assert any(e.startswith(complaint) for e in validate(config)), validate(config)


def test_build_yaml_and_translations_match_config_yaml() -> None:
    config, build, en = load("config.yaml"), load("build.yaml"), load("translations/en.yaml")
    assert set(build) <= {"build_from", "args", "labels", "codenotary"}
    assert set(build["build_from"]) == set(config["arch"])
    assert all(image.endswith(f":{config['version']}") for image in build["build_from"].values())
    assert set(en) <= {"configuration", "network"}
    assert set(en["configuration"]) == set(config["schema"])
    assert all(set(entry) <= {"name", "description", "fields"} for entry in en["configuration"].values())
    assert set(en["network"]) <= set(config["ports"])
    dockerfile = (ADDON / "Dockerfile").read_text()
    assert "FROM ${BUILD_FROM}" in dockerfile and 'io.hass.type="addon"' in dockerfile


def options_to_config(tmp_path: Path, options: dict[str, Any]) -> Path:
    (tmp_path / "options.json").write_text(json.dumps(options))
    config = tmp_path / "config" / "kws-stream.toml"
    done = subprocess.run([sys.executable, str(GLUE), "config", str(tmp_path / "options.json"), str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return config


def test_the_default_options_become_a_config_the_service_accepts(tmp_path: Path, run_cli) -> None:  # noqa: ANN001
    path = options_to_config(tmp_path, load("config.yaml")["options"])
    done = run_cli("config", "check", path)
    assert done.returncode == 0 and done.stdout.strip() == f"{path}: ok", done.stderr
    config = cfg.load(path)
    assert (config.model.name, config.command.enabled, config.detection.threshold) == ("micronet-l", True, 0.7)
    assert config.detection.keywords == () and config.service.log_level == "info"
    assert config.wyoming.uri == "tcp://0.0.0.0:10400"


def test_every_option_lands_on_its_config_key(tmp_path: Path, run_cli) -> None:  # noqa: ANN001
    path = options_to_config(tmp_path, {"model": "micronet-m", "mode": "plain", "threshold": 0.55,
                                        "keywords": ["up", "stop"], "log_level": "debug"})
    assert run_cli("config", "check", path).returncode == 0
    config = cfg.load(path)
    assert config.model.name == "micronet-m" and config.command.enabled is False
    assert config.detection.threshold == 0.55 and config.detection.keywords == ("up", "stop")
    assert config.service.log_level == "debug"


class Supervisor(http.server.BaseHTTPRequestHandler):
    """Stands in for the Supervisor's API (none can run here): records what is posted."""

    posted: list[tuple[str, str, dict]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.posted.append((self.path, self.headers["Authorization"], body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"result": "ok", "data": {"uuid": "x"}}')

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def supervisor() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Supervisor)
    Supervisor.posted = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def test_discovery_is_posted_once_the_wyoming_service_answers(supervisor: str, cli_env: dict[str, str],
                                                              tmp_path: Path) -> None:
    port = free_port()
    env = {**cli_env, "SUPERVISOR_TOKEN": "t0k3n", "SUPERVISOR_URL": supervisor, "KWS_ADDON_PORT": str(port)}
    glue = subprocess.Popen([sys.executable, str(GLUE), "discover"], env=env, stderr=subprocess.PIPE, text=True)
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([*kws_command(), "serve", "wyoming", "--uri", f"tcp://127.0.0.1:{port}"],
                              env=cli_env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        assert glue.wait(timeout=120) == 0, glue.stderr.read() if glue.stderr else ""
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    assert Supervisor.posted == [("/discovery", "Bearer t0k3n", {
        "service": "wyoming", "config": {"uri": f"tcp://{socket.gethostname()}:{port}"}})]


def test_without_a_supervisor_there_is_no_discovery(cli_env: dict[str, str]) -> None:
    env = {k: v for k, v in cli_env.items() if k != "SUPERVISOR_TOKEN"}
    done = subprocess.run([sys.executable, str(GLUE), "discover"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "no SUPERVISOR_TOKEN" in done.stderr
