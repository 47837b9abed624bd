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


def _interpolated(environment: dict[str, str], values: dict[str, str]) -> dict[str, str]:
    """The environment as docker compose passes it, with `values` for the ${...} variables."""

    def value(match: re.Match) -> str:
        return values.get(match.group(1), match.group(3) or "")

    return {key: VARIABLE.sub(value, str(raw)) for key, raw in environment.items()}


LOYALTY_SERVICES = ("migrate", "loyalty", "worker", "scheduler", "dashboard", "api")


def test_the_database_password_reaches_postgresql_whatever_its_characters():
    from sqlalchemy.engine import make_url

    from worker.config import Settings

    for name, service in SERVICES.items():
        for key, raw in (service.get("environment") or {}).items():
            # No variable inside a URL's user info, where @ / # ? change what follows.
            assert not re.search(r"://[^/\s]*\$\{", str(raw)), (name, key)
    password = "p@ss/w#rd"
    for name in LOYALTY_SERVICES:
        settings = Settings.from_env(_interpolated(SERVICES[name]["environment"], {"POSTGRES_PASSWORD": password}))
        url = make_url(settings.database_url)
        assert (url.host, url.port, url.username, url.password, url.database) == (
            "postgres",
            5432,
            "loyalty",
            password,
            "loyalty",
        ), name


def test_admin_commands_run_in_a_one_off_service_with_the_program_and_rewards_files():
    admin = SERVICES["loyalty"]
    assert admin["profiles"] == ["admin"]  # never started by `docker compose up`
    assert admin["environment"] == SERVICES["migrate"]["environment"]
    for name in LOYALTY_SERVICES:
        assert "./deploy/loyalty:/etc/loyalty:ro" in SERVICES[name]["volumes"], name
    operations = (ROOT / "docs" / "operations.md").read_text()
    for command in ("api-key create", "rewards load /etc/loyalty/", "program publish /etc/loyalty/"):
        assert f"docker compose run --rm loyalty {command}" in operations, command


def test_the_worker_is_restarted_and_given_time_to_stop():
    worker = SERVICES["worker"]
    assert worker["restart"] == "unless-stopped"
    command = worker["command"]
    timeout_s = int(command[command.index("--shutdown-timeout") + 1])
    assert int(worker["stop_grace_period"].removesuffix("s")) > timeout_s


def test_readme_examples_name_the_compose_services():
    readme = (ROOT / "README.md").read_text()
    hosts = re.findall(r"export LOYALTY_(?:DATABASE|REDIS)_URL=\w+://(?:[^@\s]*@)?([\w.-]+)", readme)
    assert sorted(hosts) == ["postgres", "redis"]
    assert set(hosts) <= set(SERVICES)
