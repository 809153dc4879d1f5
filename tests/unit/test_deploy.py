"""deploy/: the compose file, the load balancer and the Kubernetes example hold together with the server.

Every file parses; every `VA_*` name is a setting and every front-end's environment is one `Settings`
takes; the probes and the load balancer's routes are the client contract's paths; the grace periods
outlast the drain. `docker compose config` checks the compose file where the compose plugin is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from voice_assistant.config import FLAT_NAMES, Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
EXAMPLE_ENV = DEPLOY / ".env.example"
FRONTENDS = ("frontend-a", "frontend-b")


def deploy_files() -> Iterator[Path]:
    return (path for path in sorted(DEPLOY.rglob("*")) if path.is_file())


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document is not None]


def example_env() -> dict[str, str]:
    lines = (line.strip() for line in EXAMPLE_ENV.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def interpolated(value: str, env: Mapping[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?error}`."""

    def one(match: re.Match[str]) -> str:
        name, operator, rest = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        assert operator != ":?", f"{name} is required: {rest}"
        return rest if operator == ":-" else ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


def compose_service(name: str) -> dict[str, Any]:
    services: dict[str, dict[str, Any]] = yaml_documents(COMPOSE)[0]["services"]
    return services[name]


def k8s(kind: str) -> dict[str, Any]:
    (document,) = [
        d for path in sorted(K8S.glob("*.yaml")) for d in yaml_documents(path) if d["kind"] == kind
    ]
    return document


def k8s_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet makes it: secrets from secret.yaml, `$(NAME)` expanded."""
    secret = k8s("Secret")["stringData"]
    env: dict[str, str] = {}
    for variable in container["env"]:
        if "valueFrom" not in variable:
            value = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], variable["value"])
        elif "secretKeyRef" in variable["valueFrom"]:
            value = secret[variable["valueFrom"]["secretKeyRef"]["key"]]
        else:
            value = "10.1.2.3"  # the downward API's pod IP
        env[variable["name"]] = value
    return env


def settings_from(env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in [name for name in os.environ if name.upper().startswith("VA_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def seconds(duration: str | list[str] | None) -> float:
    """`40s` (compose), `1h` (nginx)."""
    text = duration[0] if isinstance(duration, list) else duration
    match = re.fullmatch(r"(\d+)([smh])", text or "")
    assert match, duration
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


# -- nginx


@dataclass
class Directive:
    name: str
    args: list[str]
    block: list[Directive] | None = None

    def first(self, name: str) -> Directive | None:
        return next((child for child in self.block or [] if child.name == name), None)

    def all(self, name: str) -> list[Directive]:
        return [child for child in self.block or [] if child.name == name]


def parse_nginx(text: str) -> Directive:
    """nginx's configuration syntax: `name args;` and `name args { ... }`, `#` comments, quoted strings."""
    tokens = re.findall(r'"[^"]*"|[{};]|[^\s{};"]+', re.sub(r"#[^\n]*", "", text))
    position = 0

    def block() -> list[Directive]:
        nonlocal position
        directives: list[Directive] = []
        while position < len(tokens) and tokens[position] != "}":
            words: list[str] = []
            while tokens[position] not in ("{", ";"):
                words.append(tokens[position].strip('"'))
                position += 1
            position += 1
            if tokens[position - 1] == "{":
                directives.append(Directive(words[0], words[1:], block()))
                position += 1  # the closing brace
            else:
                directives.append(Directive(words[0], words[1:]))
        return directives

    return Directive("main", [], block())


@dataclass
class Nginx:
    root: Directive
    server: Directive = field(init=False)

    def __post_init__(self) -> None:
        http = self.root.first("http")
        assert http is not None
        (self.server,) = http.all("server")

    def location(self, path: str) -> Directive:
        """The location nginx picks for `path`: an exact match, else the longest prefix unless a regex
        (first in order) matches."""
        locations = self.server.all("location")
        for location in locations:
            if location.args[0] == "=" and location.args[1] == path:
                return location
        prefixes = [loc for loc in locations if len(loc.args) == 1 and path.startswith(loc.args[0])]
        longest = max(prefixes, key=lambda loc: len(loc.args[0]), default=None)
        for location in locations:
            if location.args[0] == "~" and re.search(location.args[1], path):
                return location
        assert longest is not None, f"no location serves {path}"
        return longest

    def setting(self, location: Directive, name: str) -> list[str] | None:
        """A directive's arguments in `location`, else as the server level sets it."""
        for level in (location, self.server):
            found = level.first(name)
            if found is not None:
                return found.args
        return None


NGINX = Nginx(parse_nginx((DEPLOY / "nginx.conf").read_text()))


def contract_paths() -> set[str]:
    """Every path the README's client contract names, its placeholders filled in."""
    readme = (ROOT / "README.md").read_text()
    contract = readme[readme.index("## The client contract") : readme.index("## Python client")]
    paths = set(re.findall(r"`(?:(?:GET|POST|DELETE) )?(/[^`\s]*)`", contract))
    filled = {
        re.sub(r"\{n\}", "0", re.sub(r"\{id\}", "0123abcd", path)).replace("...", "sessions")
        for path in paths
    }
    assert {"/webrtc/offer", "/telephone/stream", "/api/sessions/0123abcd/events", "/readyz"} <= filled
    return filled


# -- the tests


def test_every_deploy_yaml_parses_to_documents() -> None:
    files = [path for path in deploy_files() if path.suffix == ".yaml"]
    assert COMPOSE in files and len(files) >= 5
    for path in files:
        documents = yaml_documents(path)
        assert documents and all(isinstance(document, dict) for document in documents), path


def test_every_va_name_in_deploy_is_a_setting() -> None:
    used = {
        name
        for path in deploy_files()
        for name in re.findall(r"\bVA_[A-Z0-9_]+(?![A-Z0-9_*])", path.read_text())
    }
    settings = {f"VA_{name.upper()}" for name in FLAT_NAMES}
    assert used and not used - settings, f"not settings: {sorted(used - settings)}"


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_each_compose_frontend_is_configured_as_its_settings_read(
    frontend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        name: interpolated(str(value), example_env())
        for name, value in compose_service(frontend)["environment"].items()
    }
    settings = settings_from(env, monkeypatch)
    assert settings.backend.kind == "openai" and settings.backend.base_url == "http://vllm:8000/v1"
    assert settings.storage.database_url is not None and "@postgres:5432/" in settings.storage.database_url
    assert any(url.startswith("turn:") for url in settings.ice.turn_urls) and settings.ice.turn_secret
    # The instance's media address is the one the compose network gives it, and coturn may relay to it.
    (address,) = settings.web.ice_addresses
    networks = compose_service(frontend)["networks"]
    assert str(address.local) == networks["backend"]["ipv4_address"]
    assert f"--allowed-peer-ip={address.local}" in compose_service("coturn")["command"]
    # The load balancer sends to their port; coturn checks the credentials they mint with the same secret.
    assert f"server {frontend}:{settings.web.port}" in (DEPLOY / "nginx.conf").read_text()
    assert "--static-auth-secret=${TURN_SECRET}" in compose_service("coturn")["command"]
    assert env["VA_TURN_SECRET"] == example_env()["TURN_SECRET"]
    # The default model, the one vLLM serves.
    assert settings.model.name == compose_service("vllm")["command"][0]
    assert seconds(compose_service(frontend)["stop_grace_period"]) > float(env["VA_DRAIN_TIMEOUT_S"])


def test_the_kubernetes_deployment_is_configured_as_its_settings_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pod = k8s("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = k8s_env(container)
    settings = settings_from(env, monkeypatch)
    assert settings.storage.database_url == k8s("Secret")["stringData"]["database-url"]
    assert str(settings.web.ice_addresses[0].local) == "10.1.2.3"
    assert settings.ice.turn_secret and settings.ice.turn_secret.get_secret_value() == "change-me"
    (port,) = container["ports"]
    assert port["containerPort"] == settings.web.port
    # Long enough for the preStop pause and the whole drain before the kubelet's SIGKILL.
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pause + float(env["VA_DRAIN_TIMEOUT_S"])


def test_the_kubernetes_probes_are_the_contracts_health_routes() -> None:
    (container,) = k8s("Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in contract_paths()
        assert container[probe]["httpGet"]["port"] == container["ports"][0]["name"]


def test_the_service_and_the_budget_select_the_deployments_pods() -> None:
    labels = k8s("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert k8s("Service")["spec"]["selector"].items() <= labels.items()
    assert k8s("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = k8s("Deployment")["spec"]["template"]["spec"]["containers"]
    assert k8s("Service")["spec"]["ports"][0]["targetPort"] in {port["name"] for port in container["ports"]}
    kustomized = set(k8s("Kustomization")["resources"])
    assert kustomized == {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize("path", sorted(contract_paths()))
def test_the_load_balancer_sends_every_contract_path_to_the_frontends(path: str) -> None:
    location = NGINX.location(path)
    if path == "/metrics":  # per instance: scraped from each front-end, never through the balancer
        assert location.first("return") is not None
        return
    assert NGINX.setting(location, "proxy_pass") == ["http://frontends"], path


def test_the_phones_websocket_is_upgraded_and_lasts_a_call() -> None:
    location = NGINX.location("/telephone/stream")
    assert NGINX.setting(location, "proxy_http_version") == ["1.1"]
    headers = {
        d.args[0].lower(): d.args[1]
        for level in (location, NGINX.server)
        for d in level.all("proxy_set_header")
    }
    assert headers["upgrade"] == "$http_upgrade" and headers["connection"] == "$connection_upgrade"
    assert seconds(NGINX.setting(location, "proxy_read_timeout")) >= 3600


def test_server_sent_events_pass_unbuffered() -> None:
    location = NGINX.location("/api/sessions/0123abcd/events")
    assert NGINX.setting(location, "proxy_buffering") == ["off"]
    assert NGINX.location("/api/sessions/0123abcd") is not location  # the REST routes keep buffering


def test_a_refused_offer_is_retried_on_the_other_frontend() -> None:
    retry = NGINX.setting(NGINX.location("/webrtc/offer"), "proxy_next_upstream")
    assert retry is not None and {"http_503", "non_idempotent"} <= set(retry)


def test_docker_compose_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode:
        pytest.skip("docker compose is not installed here (no docker CLI, or no compose plugin)")
    checked = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "--env-file", str(EXAMPLE_ENV), "config", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
