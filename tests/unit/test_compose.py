"""docker-compose.yml starts: it parses, and references only images, files and variables that exist.

No Docker engine is needed: the file is read as data and each reference is checked.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
# ${NAME}, ${NAME:-default}, ${NAME:?message}
VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}")


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_every_service_has_an_image_or_the_dockerfile():
    for name, service in SERVICES.items():
        assert ("image" in service) != ("build" in service), name
        if "build" in service:
            assert service["build"] == "." and (ROOT / "Dockerfile").is_file()
        else:
            assert re.fullmatch(r"[a-z0-9./-]+:[A-Za-z0-9._-]+", service["image"]), f"{name}: pin a tag"


def test_bind_mounts_name_files_in_the_repository():
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source}"
            else:
                assert source in COMPOSE["volumes"], f"{name}: named volume {source}"


def test_every_variable_is_in_env_example_and_every_required_one_is_explained():
    example = _env_example()
    found = [match for text in _strings(COMPOSE) for match in VARIABLE.finditer(text)]
    used = {match.group(1) for match in found}
    assert used <= set(example), sorted(used - set(example))
    required = {match.group(1) for match in found if match.group(2) == ":?"}
    assert required == {"POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "LOYALTY_DASHBOARD_PASSWORD"}
    readme = (ROOT / "README.md").read_text()
    assert all(name in readme for name in required)


def test_production_path_runs_scheduler_and_dashboard_with_health_checks():
    import typer

    from worker.cli import app

    commands = set(typer.main.get_command(app).list_commands(None))
    for name in ("migrate", "worker", "scheduler", "dashboard"):
        assert SERVICES[name]["command"][0] in commands, name
    for name in ("worker", "scheduler"):
        check = SERVICES[name]["healthcheck"]["test"]
        assert "http://127.0.0.1:9191/metrics" in check[-1]
        assert SERVICES[name]["environment"]["LOYALTY_METRICS_PORT"] == "9191"
    assert SERVICES["dashboard"]["ports"] == ["127.0.0.1:8089:8089"]
    for name, service in SERVICES.items():
        for dependency in service.get("depends_on", []):
            assert dependency in SERVICES, f"{name} depends on {dependency}"


def test_image_holds_the_example_files_the_docs_name():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for example in ("docs/program.example.toml", "docs/rewards.example.toml"):
        assert (ROOT / example).is_file()
        assert example in dockerfile
