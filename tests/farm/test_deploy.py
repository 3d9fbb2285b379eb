"""The compose file a farm is deployed with: parsed and checked for what the README promises
(no docker engine is needed), and validated by ``docker compose config`` where that works."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def workers(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if name.startswith("worker")}


def test_the_farm_has_redis_postgres_workers_and_flower(compose):
    assert {"redis", "postgres", "worker", "flower"} <= set(compose["services"])


def test_redis_keeps_its_queue_never_evicts_and_is_not_published(compose):
    redis = compose["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command
    assert "ports" not in redis and redis["volumes"]


def test_postgres_has_a_volume_a_healthcheck_and_no_published_port(compose):
    postgres = compose["services"]["postgres"]
    assert "ports" not in postgres
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_each_worker_reserves_exactly_one_gpu_of_its_own(compose):
    devices = {}
    for name, service in workers(compose).items():
        (reservation,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert reservation["driver"] == "nvidia" and reservation["capabilities"] == ["gpu"]
        assert "count" not in reservation and len(reservation["device_ids"]) == 1
        devices[name] = reservation["device_ids"][0]
        command = service["command"]
        # the reserved GPU is index 0 in the container; the node name carries the host's index
        assert command[:4] == ["sdfarm", "worker", "--gpu", "0"]
        assert command[command.index("--name") + 1].startswith(f"gpu{devices[name]}@")
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert devices["worker"] == "0" and len(set(devices.values())) == len(devices)


def test_flower_watches_the_same_broker_as_the_workers(compose):
    flower = compose["services"]["flower"]
    assert "sdfarm.broker.flower" in flower["command"]
    assert flower["environment"]["SDFARM_BROKER_URL"] == compose["services"]["worker"]["environment"]["SDFARM_BROKER_URL"]
    assert all(p.startswith("127.0.0.1:") for p in flower["ports"])


def test_the_hub_overlay_publishes_redis_only_with_a_password():
    hub = yaml.safe_load((REPO / "docker-compose.hub.yml").read_text())
    redis = hub["services"]["redis"]
    assert redis["ports"] and "--requirepass" in redis["command"]
    assert "--maxmemory-policy" in redis["command"]


def test_the_image_runs_a_worker_as_an_unprivileged_user():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "USER sdfarm" in dockerfile and 'CMD ["sdfarm", "worker", "--gpu", "0"]' in dockerfile
    assert "tests" in (REPO / ".dockerignore").read_text().split()


def _compose_cli() -> list[str] | None:
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) and subprocess.run([*cmd, "version"], capture_output=True).returncode == 0:
            return cmd
    return None


def test_docker_compose_config_accepts_the_file():
    cmd = _compose_cli()
    if cmd is None:
        pytest.skip("no docker compose client here (the YAML checks above still ran)")
    for files in (["docker-compose.yml"], ["docker-compose.yml", "docker-compose.hub.yml"]):
        args = [a for f in files for a in ("-f", f)]
        proc = subprocess.run([*cmd, *args, "config", "--quiet"], cwd=REPO, capture_output=True,
                              text=True, env={"PATH": "/usr/bin:/bin:/usr/local/bin",
                                              "REDIS_PASSWORD": "x", "POSTGRES_PASSWORD": "y"})
        assert proc.returncode == 0, proc.stderr


def test_flower_gets_the_farms_app_from_the_environment(monkeypatch):
    import importlib
    import sys

    monkeypatch.setenv("SDFARM_BROKER_URL", "redis://broker.example:6379/3")
    monkeypatch.setenv("SDFARM_VISIBILITY_TIMEOUT", "7200")
    sys.modules.pop("sdfarm.broker.flower", None)
    app = importlib.import_module("sdfarm.broker.flower").app
    sys.modules.pop("sdfarm.broker.flower", None)
    assert app.conf.broker_url == "redis://broker.example:6379/3"
    assert app.conf.broker_transport_options["visibility_timeout"] == 7200
