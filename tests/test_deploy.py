"""The deployment recipe: compose.yaml, the Dockerfile and the Caddyfile agree with each other and with Fay.

No container engine runs here: these check what can go wrong without one (YAML, service references, files the
Dockerfile copies, the settings the nodes are given).
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from fay_core.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))


def _interpolate(value: str) -> str:
    """compose's ``${VAR:-default}``, with the defaults."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_compose_services_reference_what_exists(compose) -> None:
    services = compose["services"]
    assert {"caddy", "fay-1", "fay-2", "chroma", "redis", "postgres", "coturn"} <= set(services)
    declared = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for dep in svc.get("depends_on") or []:
            assert dep in services, f"{name} depends on unknown service {dep}"
        for mount in svc.get("volumes") or []:
            source = mount.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
            else:
                assert source in declared, f"{name} uses volume {source}, not declared under volumes:"
        if "build" in svc:
            assert (ROOT / svc["build"] / "Dockerfile").is_file()
    assert not (declared - {m.split(":", 1)[0] for s in services.values() for m in s.get("volumes") or []})


def test_the_nodes_settings_are_valid_and_their_udp_ranges_apart(compose, monkeypatch) -> None:
    ranges = []
    for name in ("fay-1", "fay-2"):
        env = {k: _interpolate(str(v)) for k, v in compose["services"][name]["environment"].items()}
        for key in [k for k in os.environ if k.startswith("FAY_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("FAY_CONFIG", "/nonexistent")
        settings = load_settings(_env_file=None)
        assert settings.knowledge.chroma_url == "http://chroma:8000" and settings.server.drain_timeout_s > 0
        assert settings.audit.url == "postgresql://fay:change-me@postgres:5432/fay"  # one record for both nodes
        redis = settings.cluster.redis_url
        assert redis is not None and redis.get_secret_value() == "redis://redis:6379/0"  # one cluster
        assert settings.cluster.node_url == f"http://{name}:8000"  # other nodes reach it by its service name
        lo, hi = settings.webrtc.udp_port_min, settings.webrtc.udp_port_max
        assert lo is not None and hi is not None
        ranges.append(range(lo, hi + 1))
        published = compose["services"][name]["ports"][0]  # the node's range, published as is
        assert published == f"{lo}-{hi}:{lo}-{hi}/udp"
        # the stop grace period covers the drain and the shutdown after it
        grace = int(str(compose["services"][name]["stop_grace_period"]).rstrip("s"))
        assert grace >= settings.server.drain_timeout_s + settings.server.shutdown_timeout_s
        assert settings.webrtc.ice_servers and settings.webrtc.ice_servers[0].urls[0].endswith(":3478")
    assert not set(ranges[0]) & set(ranges[1])


def test_the_proxy_reaches_the_nodes_on_their_port(compose) -> None:
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text(encoding="utf-8")
    targets = re.search(r"reverse_proxy ([^{]+)\{", caddyfile)
    assert targets is not None
    for target in targets.group(1).split():
        host, port = target.split(":")
        assert host in compose["services"], f"Caddy proxies to unknown service {host}"
        assert port == compose["services"][host]["environment"].get("FAY_SERVER__PORT", "8000")
    assert "health_uri /ready" in caddyfile  # draining and warming nodes get no new sessions


def test_the_dockerfile_copies_files_that_exist_and_runs_fay() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()]
    copies = [shlex.split(line)[1:-1] for line in lines if line.startswith("COPY ")]
    assert copies
    for sources in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is not in the repository"
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert "web/node_modules" in ignored and ".venv" in ignored
    assert lines[-1] == 'CMD ["fay", "run"]'  # the last CMD is the container's (the other is HEALTHCHECK's)
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'fay = "fay_core.cli:main"' in pyproject and "otel = [" in pyproject  # the extras it installs exist
    assert "postgres = [" in pyproject and "cluster = [" in pyproject
    assert '".[offline,otel,postgres,cluster]"' in "\n".join(lines)
    assert any(line.startswith("STOPSIGNAL SIGTERM") for line in lines)
