"""docker-compose.yml and the Dockerfile, read as data: what a deployment relies on is there."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from typing import Any

import pytest
import yaml

from gateway.core.redis_client import parse_sentinel
from gateway.core.settings import Settings
from tests.conftest import ROOT

ENV_REF = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?P<op>:?[?-])?(?P<arg>[^}]*)\}")
SAMPLE_HOST_ENV = {
    "GATEWAY_PUBLIC_BASE_URL": "https://gateway.example.org",
    "GATEWAY_TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "GATEWAY_TWILIO_AUTH_TOKEN": "secret",
    "GATEWAY_BRIDGE_NUMBER": "+12065550100",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    out = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            out.append((instruction.upper(), rest.strip()))
    return out


def instructions(dockerfile: list[tuple[str, str]], name: str) -> list[str]:
    return [args for instruction, args in dockerfile if instruction == name]


def top_level_packages() -> set[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    found = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    return {
        name for name in found if any(re.fullmatch(p.replace("*", ".*"), name) for p in patterns)
    }


def gateway_env_names(*texts: str) -> set[str]:
    return set(re.findall(r"\bGATEWAY_[A-Z0-9_]+", "\n".join(texts)))


def resolve(value: str, host_env: dict[str, str]) -> str:
    """Compose interpolation of ``${VAR}``, ``${VAR:?msg}`` and ``${VAR:-default}``."""

    def sub(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"] or "", match["arg"]
        if name in host_env:
            return host_env[name]
        if op.endswith("-"):
            return arg
        raise AssertionError(f"{name} is required: {arg}")

    return ENV_REF.sub(sub, value)


# --- docker-compose.yml -------------------------------------------------------------------------


def test_both_services(compose: dict[str, Any]) -> None:
    assert {"gateway", "redis"} <= set(compose["services"])


def test_redis_persists_with_aof_on_a_named_volume(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"] == "redis:7-alpine"
    command = redis["command"]
    words = command if isinstance(command, list) else shlex.split(command)
    assert words[0] == "redis-server"
    assert "--appendonly" in words
    assert words[words.index("--appendonly") + 1] == "yes"
    mounts = [v.split(":") for v in redis["volumes"]]
    data = [m for m in mounts if m[1] == "/data"]
    assert data, mounts
    assert data[0][0] in compose["volumes"]  # a named volume, declared


def test_redis_health_check_pings(compose: dict[str, Any]) -> None:
    test = compose["services"]["redis"]["healthcheck"]["test"]
    words = test if isinstance(test, list) else ["CMD-SHELL", test]
    assert words[0] in {"CMD", "CMD-SHELL"}
    assert "redis-cli ping" in " ".join(words[1:])


def test_gateway_is_built_here_and_waits_for_a_healthy_redis(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway"]
    build = gateway["build"]
    context = build if isinstance(build, str) else build["context"]
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (ROOT / context / dockerfile).resolve() == (ROOT / "Dockerfile").resolve()
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"


def test_gateway_publishes_8080(compose: dict[str, Any]) -> None:
    ports = [str(p) for p in compose["services"]["gateway"]["ports"]]
    assert any(p.rsplit(":", 1)[-1] == "8080" for p in ports), ports


def test_gateway_environment(compose: dict[str, Any]) -> None:
    env = compose["services"]["gateway"]["environment"]
    assert isinstance(env, dict)
    assert env["GATEWAY_REDIS_URL"] == "redis://redis:6379/0"
    assert env["GATEWAY_HOST"] == "0.0.0.0"
    assert str(env["GATEWAY_PORT"]) == "8080"
    assert env["GATEWAY_CONFIG_DIR"]
    for name in SAMPLE_HOST_ENV:
        match = ENV_REF.fullmatch(str(env[name]))
        assert match, f"{name} must come from the host environment"
        assert match["name"] == name
        assert match["op"] in (None, ":?", "?"), f"{name} must not fall back to a default"


def test_every_gateway_variable_is_a_setting(compose: dict[str, Any]) -> None:
    names = gateway_env_names(
        (ROOT / "docker-compose.yml").read_text(), (ROOT / "Dockerfile").read_text()
    )
    assert names
    unknown = {n for n in names if n.removeprefix("GATEWAY_").lower() not in Settings.model_fields}
    assert not unknown, f"not settings: {sorted(unknown)}"


def test_the_compose_environment_makes_valid_settings(compose: dict[str, Any]) -> None:
    env = compose["services"]["gateway"]["environment"]
    values = {
        name.removeprefix("GATEWAY_").lower(): resolve(str(value), SAMPLE_HOST_ENV)
        for name, value in env.items()
    }
    settings = Settings.model_validate(values)  # this environment only, not the host's
    assert settings.port == 8080
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.sandbox_enabled is False
    with pytest.raises(AssertionError, match="required"):
        resolve(str(env["GATEWAY_TWILIO_AUTH_TOKEN"]), {})


def test_gateway_health_check_asks_readyz_without_curl(compose: dict[str, Any]) -> None:
    test = compose["services"]["gateway"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert test[1:3] == ["python", "-c"]
    assert "http://127.0.0.1:8080/readyz" in test[3]
    compile(test[3], "<healthcheck>", "exec")


def test_config_is_mounted_where_the_gateway_reads_it(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway"]
    targets = [str(v).split(":")[1] for v in gateway["volumes"]]
    assert gateway["environment"]["GATEWAY_CONFIG_DIR"] in targets


def test_replicas_are_addressed(compose: dict[str, Any]) -> None:
    replicas = compose["services"]["gateway"].get("deploy", {}).get("replicas")
    text = (ROOT / "docker-compose.yml").read_text().lower()
    assert isinstance(replicas, int) or "replicas" in text
    assert "one redis" in text


# --- Dockerfile ---------------------------------------------------------------------------------


def test_dockerfile_base_image(dockerfile: list[tuple[str, str]]) -> None:
    assert instructions(dockerfile, "FROM") == ["python:3.11-slim"]


def test_dockerfile_copies_every_package_and_installs_from_pyproject(
    dockerfile: list[tuple[str, str]],
) -> None:
    copied: set[str] = set()
    for args in instructions(dockerfile, "COPY"):
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        copied |= {w.rstrip("/") for w in words[:-1]}
    packages = top_level_packages()
    assert {"gateway", "adapters"} <= packages
    assert packages | {"pyproject.toml", "README.md", "config"} <= copied
    runs = " ".join(instructions(dockerfile, "RUN"))
    assert re.search(r"pip install (--\S+ )*\.(\s|$)", runs), runs


def test_dockerfile_runs_the_gateway_as_a_non_root_user(dockerfile: list[tuple[str, str]]) -> None:
    users = instructions(dockerfile, "USER")
    assert users
    assert users[-1] not in {"root", "0", "0:0"}
    assert re.search(
        rf"useradd .*\b{re.escape(users[-1])}\b", " ".join(instructions(dockerfile, "RUN"))
    )
    names = [name for name, _ in dockerfile]
    assert names.index("USER") < names.index("CMD")
    cmd = instructions(dockerfile, "CMD")
    assert len(cmd) == 1
    assert json.loads(cmd[0]) == ["python", "-m", "gateway", "serve"]


def test_dockerfile_exposes_8080_and_checks_readiness(dockerfile: list[tuple[str, str]]) -> None:
    assert "8080" in " ".join(instructions(dockerfile, "EXPOSE")).split()
    (check,) = instructions(dockerfile, "HEALTHCHECK")
    argv = json.loads(check[check.index("CMD") + 3 :].strip())
    assert argv[:2] == ["python", "-c"]
    assert "http://127.0.0.1:8080/readyz" in argv[2]
    compile(argv[2], "<healthcheck>", "exec")


def test_dockerignore_keeps_local_state_and_keys_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", ".state", "config/api_keys.yaml"} <= set(ignored)


# --- docker-compose.ha.yml: two gateways, a primary with two replicas, three sentinels -----------

SENTINEL_PORT = 26379


@pytest.fixture(scope="module")
def ha_compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.ha.yml").read_text())
    return data


def redis_words(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return [str(w) for w in command] if isinstance(command, list) else shlex.split(command)


def flag(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


def test_ha_redis_nodes_persist_and_refuse_unreplicated_writes(ha_compose: dict[str, Any]) -> None:
    services = ha_compose["services"]
    nodes = {name: s for name, s in services.items() if s.get("image") == "redis:7-alpine"}
    redis_nodes = {n: s for n, s in nodes.items() if "--sentinel" not in " ".join(redis_words(s))}
    assert len(redis_nodes) == 3, sorted(redis_nodes)
    primaries = [n for n, s in redis_nodes.items() if "--replicaof" not in redis_words(s)]
    assert primaries == ["redis-1"]
    for name, service in redis_nodes.items():
        words = redis_words(service)
        assert words[0] == "redis-server"
        assert flag(words, "--appendonly") == "yes"
        assert flag(words, "--min-replicas-to-write") == "1"
        assert int(flag(words, "--min-replicas-max-lag")) <= 10
        assert flag(words, "--replica-announce-ip") == name
        if name != "redis-1":
            assert words[words.index("--replicaof") + 1 : words.index("--replicaof") + 3] == [
                "redis-1",
                "6379",
            ]
        (data,) = [v for v in service["volumes"] if str(v).endswith(":/data")]
        assert str(data).split(":")[0] in ha_compose["volumes"]


def test_ha_sentinels_share_the_shipped_config(ha_compose: dict[str, Any]) -> None:
    services = ha_compose["services"]
    sentinels = {n: s for n, s in services.items() if "--sentinel" in " ".join(redis_words(s))}
    assert len(sentinels) == 3, sorted(sentinels)
    conf = (ROOT / "deploy" / "sentinel.conf").read_text().splitlines()
    monitor = next(line.split() for line in conf if line.startswith("sentinel monitor "))
    _, _, service_name, host, port, quorum = monitor
    assert (host, port) == ("redis-1", "6379")
    assert int(quorum) == len(sentinels) // 2 + 1  # a majority must agree
    assert f"port {SENTINEL_PORT}" in conf
    for service in sentinels.values():
        mounts = [str(v) for v in service["volumes"]]
        config = [m for m in mounts if m.startswith("./deploy/sentinel.conf:")]
        assert config, mounts
        target = config[0].split(":")[1]
        assert target in " ".join(redis_words(service))
        assert any(m.endswith(":/data") for m in mounts)  # a sentinel rewrites its own copy
    gateway = services["gateway"]
    url = gateway["environment"]["GATEWAY_REDIS_URL"]
    addresses, name, db, _ = parse_sentinel(url)
    assert name == service_name
    assert db == 0
    assert sorted(addresses) == sorted((n, SENTINEL_PORT) for n in sentinels)
    assert set(gateway["depends_on"]) == set(sentinels)


def test_ha_runs_two_gateways_with_valid_settings(ha_compose: dict[str, Any]) -> None:
    gateway = ha_compose["services"]["gateway"]
    assert gateway["deploy"]["replicas"] >= 2
    ports = [str(p) for p in gateway["ports"]]
    assert any(p.endswith(":8080") and "-" in p.split(":")[0] for p in ports), ports
    env = gateway["environment"]
    values = {
        name.removeprefix("GATEWAY_").lower(): resolve(str(value), SAMPLE_HOST_ENV)
        for name, value in env.items()
    }
    settings = Settings.model_validate(values)
    assert settings.redis_url is not None
    assert settings.redis_url.startswith("redis+sentinel://")
    assert settings.sandbox_enabled is False
    names = gateway_env_names((ROOT / "docker-compose.ha.yml").read_text())
    unknown = {n for n in names if n.removeprefix("GATEWAY_").lower() not in Settings.model_fields}
    assert not unknown, f"not settings: {sorted(unknown)}"
    assert "readyz" in " ".join(gateway["healthcheck"]["test"])
