"""The Docker Compose deployment, checked without a Docker engine (none runs here).

What a user of `make build_and_up` relies on and what can be proven without starting a
container: `docker-compose config` accepts the file from a fresh clone (no secrets file), every
file, env file and variable it references exists, host ports bind 127.0.0.1 without clashes,
images are pinned, the app containers use the native settings names (and their values parse),
every command they run exists with the options given, the PostgreSQL init script creates the
databases (run for real on a private PostgreSQL cluster), the bucket-creating command creates
buckets (on the real embedded S3 server), the monitoring configs fit the mounts, and the
Makefile's wait-for-health loop works (against a fake `docker`, the one fault we cannot
produce for real: there is no Docker engine).
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from genreops.core.settings import Settings
from helpers import read_env_file, settings_env_names

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV_DIR = ROOT / "docker_env"
SECRETS_EXAMPLE = ENV_DIR / "secrets.env.example"
DOCKERFILE = ROOT / "docker" / "app.Dockerfile"
INIT_DIR = ROOT / "docker" / "postgres" / "init"
COMPOSE_MK = ROOT / "makefiles" / "compose.mk"
VENV_BIN = Path(sys.executable).parent

EXPECTED_SERVICES = {
    "localstack",
    "s3-init",
    "postgres",
    "mlflow",
    "prefect-server",
    "prefect-worker",
    "dask-scheduler",
    "dask-worker-1",
    "dask-worker-2",
    "triton",
    "triton-2",
    "monitor",
    "alertmanager",
    "prometheus",
    "grafana",
    "node-exporter",
}
APP_IMAGE = "genreops-app"
# Host paths a container may read besides the repository: node-exporter's view of the host.
HOST_SYSTEM_PATHS = {"/", "/proc", "/sys"}
# Written by the dashboards/alerts work; Compose mounts them into Prometheus and Grafana.
MONITORING_FILES = [
    "configs/prometheus/prometheus.compose.yml",
    "configs/prometheus/alerts.yml",
    "configs/grafana/provisioning/datasources/datasources.yml",
    "configs/grafana/provisioning/dashboards/dashboards.yml",
    "configs/grafana/provisioning/alerting/drift.yml",
    "configs/grafana/provisioning/alerting/contact-points.yml",
    "configs/alertmanager/alertmanager.compose.yml",
    "dashboards/genreops.json",
]
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err}; `$$` is a literal dollar.
INTERPOLATION = re.compile(
    r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<default>[^}]*))?\}"
)
BARE_INTERPOLATION = re.compile(r"(?<!\$)\$(?P<name>[A-Za-z_][A-Za-z0-9_]*)")
GENREOPS_NAME = re.compile(r"\bGENREOPS_[A-Z0-9][A-Z0-9_]*")
DATABASE_URL = re.compile(
    r"^postgresql(?:\+\w+)?://(?P<user>[^:@/]+)(?::(?P<password>[^@]*))?@"
    r"(?P<host>[^:/]+)(?::(?P<port>\d+))?/(?P<db>[^?]+)"
)


# --- helpers ------------------------------------------------------------------------------


def compose_binary() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (`make setup` installs Debian's package)")
    return binary


def run_config(env_file: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` as on a fresh clone: clean environment, no .env, no secrets."""
    argv = [compose_binary(), "--project-directory", str(ROOT), "--file", str(COMPOSE_FILE)]
    return subprocess.run(
        [*argv, "--env-file", str(env_file), "config"],
        cwd=workdir,
        env={"PATH": os.environ["PATH"], "HOME": str(workdir)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def env_files() -> list[Path]:
    return [*sorted(ENV_DIR.glob("*.env")), SECRETS_EXAMPLE]


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's resolved environment (`config` inlines env_file), as strings."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def parse_volume(volume: Any) -> tuple[str, str]:
    """(source, target) of a short ("src:dst[:mode]") or long volume entry."""
    if isinstance(volume, dict):
        return str(volume.get("source", "")), str(volume["target"])
    parts = str(volume).split(":")
    return (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])


def parse_port(port: Any) -> tuple[str, str, str]:
    """(host_ip, published, protocol) of a short or long port entry."""
    if isinstance(port, dict):
        return (
            str(port.get("host_ip", "")),
            str(port.get("published", "")),
            str(port.get("protocol", "tcp")),
        )
    text, _, protocol = str(port).partition("/")
    parts = text.rsplit(":", 2)
    host_ip, published = (parts[0], parts[1]) if len(parts) == 3 else ("", parts[0])
    return host_ip, published, protocol or "tcp"


def string_values(node: Any) -> Iterator[str]:
    """Every string value of parsed YAML: what Compose and Grafana interpolate (not comments)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from string_values(value)
    elif isinstance(node, list):
        for value in node:
            yield from string_values(value)


def interpolated_names(node: Any) -> list[tuple[str, str | None, str | None]]:
    """(name, operator, default) of every $VAR / ${VAR...} in the string values of ``node``."""
    found: list[tuple[str, str | None, str | None]] = []
    for text in string_values(node):
        found += [(m["name"], m["op"], m["default"]) for m in INTERPOLATION.finditer(text)]
        found += [(m["name"], None, None) for m in BARE_INTERPOLATION.finditer(text)]
    return found


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = parse_volume(volume)
        if source.startswith(("/", ".")):
            mounts.append((Path(source), target))
    return mounts


def container_path_to_repo(service: dict[str, Any], path: str) -> Path | None:
    """The repository file a bind mount shows at ``path`` inside the container, if any."""
    for source, target in bind_mounts(service):
        inner = PurePosixPath(path)
        if inner == PurePosixPath(target) or PurePosixPath(target) in inner.parents:
            return source / inner.relative_to(target)
    return None


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""

    def regex(pattern: str) -> re.Pattern[str]:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out + r"\Z")

    candidates = [path] + [str(p) for p in PurePosixPath(path).parents if str(p) != "."]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip().strip("/")
        if any(regex(pattern).match(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def dockerfile_instructions() -> list[tuple[str, list[str]]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.split()))
    return instructions


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """docker-compose.yaml as written (anchors and merge keys resolved, nothing interpolated)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`docker-compose config` from a fresh clone: no secrets.env, no .env, clean environment."""
    workdir = tmp_path_factory.mktemp("compose")
    empty = workdir / "empty.env"
    empty.write_text("")
    result = run_config(empty, workdir)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    assert "WARNING" not in result.stderr, result.stderr
    assert "is not set" not in result.stderr, result.stderr
    parsed = yaml.safe_load(result.stdout)
    assert isinstance(parsed, dict) and parsed.get("services"), result.stdout[:2000]
    return parsed


@pytest.fixture(scope="module")
def services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return config["services"]


# --- docker-compose config ----------------------------------------------------------------


def test_config_validates_from_a_fresh_clone(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == EXPECTED_SERVICES


def test_the_example_secrets_are_exactly_the_defaults(
    config: dict[str, Any], tmp_path: Path
) -> None:
    """Copying the example to secrets.env changes nothing until a value is edited."""
    result = run_config(SECRETS_EXAMPLE, tmp_path)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout) == config


def test_a_secret_set_in_the_env_file_reaches_every_user(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.env"
    secrets.write_text("POSTGRES_PASSWORD=s3cret-Value\nGENREOPS_S3_ACCESS_KEY_ID=AKIDX\n")
    result = run_config(secrets, tmp_path)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert environment(services["postgres"])["POSTGRES_PASSWORD"] == "s3cret-Value"
    assert (
        ":s3cret-Value@postgres:5432/mlflow"
        in environment(services["mlflow"])["MLFLOW_BACKEND_STORE_URI"]
    )
    assert environment(services["mlflow"])["AWS_ACCESS_KEY_ID"] == "AKIDX"
    for name in ("triton", "prefect-worker", "dask-worker-1", "s3-init"):
        env = environment(services[name])
        assert env["GENREOPS_S3_ACCESS_KEY_ID"] == "AKIDX", name
    assert ":s3cret-Value@" in environment(services["triton"])["GENREOPS_DATABASE_URL"]
    assert (
        "s3cret-Value"
        in environment(services["prefect-server"])["PREFECT_SERVER_DATABASE_CONNECTION_URL"]
    )


def test_every_variable_has_a_default_documented_in_the_example(raw: dict[str, Any]) -> None:
    example = read_env_file(SECRETS_EXAMPLE)
    used = {}
    for name, op, default in interpolated_names(raw):
        assert op in (":-", "-"), f"${name} needs ${{{name}:-default}} (fresh clones lack secrets)"
        assert name in example, f"{name} is not documented in {SECRETS_EXAMPLE.name}"
        assert default == example[name], f"{name}: default {default!r} != example {example[name]!r}"
        used[name] = default
    assert set(example) == set(used), f"documented but unused: {set(example) - set(used)}"


def test_depends_on_conditions_are_meaningful(services: dict[str, dict[str, Any]]) -> None:
    """Waiting on health needs a healthcheck; waiting on completion needs a one-shot job."""
    for name, service in services.items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = spec.get("condition", "service_started")
            if condition == "service_healthy":
                assert services[target].get("healthcheck"), f"{name}: {target} has no healthcheck"
            if condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", target
    for name in EXPECTED_SERVICES - {"s3-init"}:  # a one-shot job
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


# --- files, ports, images -----------------------------------------------------------------


def test_every_referenced_file_exists(
    raw: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    for name, service in services.items():
        build = service.get("build")
        if build:
            context = Path(build["context"])
            assert context.is_dir(), f"{name}: build context {context}"
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        for source, target in bind_mounts(service):
            if source == ROOT or ROOT in source.parents:
                assert source.exists(), f"{name}: {source} (mounted at {target}) is missing"
            else:
                assert str(source) in HOST_SYSTEM_PATHS, f"{name} mounts host path {source}"
    for name, service in raw["services"].items():
        env_file = service.get("env_file", [])
        for entry in [env_file] if isinstance(env_file, str) else env_file:
            assert (ROOT / entry).is_file(), f"{name}: env_file {entry} is missing"
    scripts = [p for p in INIT_DIR.iterdir() if p.suffix in (".sh", ".sql")]
    assert scripts, f"no init scripts in {INIT_DIR}"
    for script in scripts:
        if script.suffix == ".sh":
            assert script.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"


@pytest.mark.parametrize("relative", MONITORING_FILES)
def test_monitoring_files_mounted_by_compose_exist(relative: str) -> None:
    assert (ROOT / relative).is_file(), f"{relative} is mounted by docker-compose.yaml"


def test_host_ports_bind_loopback_and_do_not_clash(services: dict[str, dict[str, Any]]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for name, service in services.items():
        for port in service.get("ports", []):
            host_ip, published, protocol = parse_port(port)
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond loopback"
            assert published.isdigit(), f"{name}: {port} has no fixed host port"
            key = (published, protocol)
            assert key not in seen, f"host port {published} used by {seen.get(key)} and {name}"
            seen[key] = name
    assert len(seen) >= 9


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    version = metadata.version("genreops")
    for name, service in services.items():
        image = service.get("image", "")
        repository, _, tag = image.partition("@")[0].rpartition(":")
        if "/" in tag:  # a registry port, not a tag
            repository, tag = image, ""
        assert tag and tag != "latest", f"{name}: image {image!r} is not pinned to a version"
        assert re.search(r"\d+\.\d+", tag), f"{name}: tag {tag!r} is not a version"
        if service.get("build"):
            assert (repository, tag) == (APP_IMAGE, version), f"{name}: {image} != app {version}"
    base = [args[0] for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    assert len(base) == 1 and re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base[0]), base


def test_dockerfile_copies_existing_files_into_the_context() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    sources = []
    for keyword, args in dockerfile_instructions():
        if keyword in ("COPY", "ADD"):
            assert not any(a.startswith("--from") for a in args), "multi-stage: update this test"
            sources += [a.rstrip("/") for a in args[:-1] if not a.startswith("--")]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: missing from the repository"
        tracked = [f for f in listed if f == source or f.startswith(source + "/")]
        assert tracked, f"COPY {source}: nothing of it is in git"
        lost = [f for f in tracked if dockerignore_excludes(patterns, f)]
        assert not lost, f"COPY {source}: .dockerignore keeps out {lost[:5]}"
    for secret in (".env", "docker_env/secrets.env", ".venv/bin/python", ".genreops/x"):
        assert dockerignore_excludes(patterns, secret), f"{secret} would enter the build context"


# --- settings, commands, databases --------------------------------------------------------


def test_compose_uses_the_native_settings_names() -> None:
    known = settings_env_names()
    sources = [COMPOSE_FILE, DOCKERFILE, *env_files()]
    used = {name: path.name for path in sources for name in GENREOPS_NAME.findall(path.read_text())}
    unknown = {name: where for name, where in used.items() if name not in known}
    assert not unknown, f"not Settings fields (src/genreops/core/settings.py): {unknown}"
    assert "GENREOPS_DASK_ADDRESS" in used and "GENREOPS_S3_ENDPOINT_URL" in used


@pytest.mark.parametrize(
    "name", ["triton", "triton-2", "prefect-worker", "dask-worker-1", "s3-init"]
)
def test_app_containers_settings_parse(
    name: str, services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The values, not only the names: Settings reads each app container's environment."""
    for key in list(os.environ):
        if key.startswith("GENREOPS_") or key == "PREFECT_API_URL":
            monkeypatch.delenv(key)
    for key, value in environment(services[name]).items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert settings.s3_endpoint_url == "http://localstack:4566"
    assert settings.s3.access_key_id and settings.s3.secret_access_key
    assert settings.dask_address == "tcp://dask-scheduler:8786"
    assert settings.prefect_api_url == "http://prefect-server:4200/api"
    assert settings.mlflow_uri == "http://mlflow:5000"
    # both replicas, for every client and every publisher
    assert settings.triton_url == "triton:8001,triton-2:8001"
    assert settings.triton_control_url == "http://triton:8000,http://triton-2:8000"
    assert settings.serving_replica == (1 if name == "triton-2" else 0)  # state kept apart
    assert settings.home == Path("/var/lib/genreops")
    assert settings.monitoring_db_url.startswith("postgresql://")
    assert "genreops-home:/var/lib/genreops:rw" in [str(v) for v in services[name]["volumes"]]


def test_commands_exist_with_the_options_given(services: dict[str, dict[str, Any]]) -> None:
    """Every app-image command, asked for --help in this venv (the image's pinned versions)."""
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}
    checked = set()
    for name, service in services.items():
        command = service.get("command")
        if not service.get("build") or not isinstance(command, list):
            continue
        if command[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(command[2]) is not None, f"{name}: no {command[2]}"
            checked.add(name)
            continue
        if command[0] == "python":
            continue  # s3-init: run for real in test_s3_init_command_creates_the_buckets
        words = [command[0]]
        for token in command[1:]:
            if not re.fullmatch(r"[a-z][a-z-]*", token):
                break
            words.append(token)
        result = subprocess.run(
            [str(VENV_BIN / words[0]), *words[1:], "--help"],
            capture_output=True, text=True, env=env, timeout=180,
        )  # fmt: skip
        assert result.returncode == 0, f"{name}: {' '.join(words)} --help: {result.stderr}"
        for option in (t.split("=")[0] for t in command if t.startswith("--")):
            listed = re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", result.stdout)
            assert listed, f"{name}: `{' '.join(words)}` has no {option}"
        checked.add(name)
    assert {"mlflow", "prefect-server", "prefect-worker", "triton", "dask-worker-2"} <= checked


def test_database_urls_point_at_what_postgres_creates(
    services: dict[str, dict[str, Any]],
) -> None:
    postgres = environment(services["postgres"])
    script = "\n".join(p.read_text() for p in sorted(INIT_DIR.iterdir()))
    created = set(re.findall(r"'(\w+)'", re.search(r"ARRAY\[([^\]]*)\]", script)[1]))
    assert created == {"mlflow", "prefect", "monitoring"}
    assert not re.search(r"\bDROP\b", script, re.IGNORECASE), "init scripts never drop anything"
    urls = 0
    for name, service in services.items():
        for key, value in environment(service).items():
            match = DATABASE_URL.match(value)
            if not match:
                continue
            urls += 1
            assert match["host"] == "postgres" and match["port"] in (None, "5432"), (name, key)
            assert match["user"] == postgres["POSTGRES_USER"], (name, key)
            assert match["password"] == postgres["POSTGRES_PASSWORD"], (name, key)
            assert match["db"] in created, f"{name}: {key} names database {match['db']}"
    assert urls >= 5
    grafana = environment(services["grafana"])
    assert grafana["MONITORING_DB_NAME"] == "monitoring"
    assert grafana["MONITORING_DB_HOST"] == "postgres:5432"
    assert grafana["MONITORING_DB_USER"] == postgres["MONITORING_READER_USER"]
    assert grafana["MONITORING_DB_PASSWORD"] == postgres["MONITORING_READER_PASSWORD"]


def test_mlflow_artifacts_go_to_the_bucket_s3_init_creates(
    services: dict[str, dict[str, Any]],
) -> None:
    command = services["mlflow"]["command"]
    destination = command[command.index("--artifacts-destination") + 1]
    bucket = destination.removeprefix("s3://").split("/")[0]
    assert bucket == environment(services["s3-init"])["GENREOPS_ARTIFACTS_BUCKET"]
    mlflow_env = environment(services["mlflow"])
    app_env = environment(services["s3-init"])
    assert mlflow_env["MLFLOW_S3_ENDPOINT_URL"] == app_env["GENREOPS_S3_ENDPOINT_URL"]
    assert mlflow_env["AWS_ACCESS_KEY_ID"] == app_env["GENREOPS_S3_ACCESS_KEY_ID"]
    assert mlflow_env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert "mlflow:*" in mlflow_env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")


@pytest.fixture
def private_postgres() -> Iterator[tuple[list[str], dict[str, str]]]:
    """A throw-away PostgreSQL cluster on a Unix socket (never the machine's shared server)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = found[-1] if found else shutil.which("initdb")
    if not initdb:
        pytest.skip("PostgreSQL server binaries (initdb) are not installed")
    bindir = str(Path(initdb).parent)
    prefix: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="genreops-pg-"))
    if os.geteuid() == 0:  # initdb refuses root; run the cluster as the postgres user
        runuser = shutil.which("runuser")
        try:
            import pwd

            owner = pwd.getpwnam("postgres")
        except KeyError:
            owner = None
        if not runuser or owner is None:
            shutil.rmtree(base)
            pytest.skip("running as root without a postgres user to own a private cluster")
        os.chown(base, owner.pw_uid, owner.pw_gid)
        prefix = [runuser, "-u", "postgres", "--"]
    data, port = base / "data", "5432"  # socket only: no TCP port is opened
    env = {"PATH": f"{bindir}:{os.environ['PATH']}", "LC_ALL": "C"}
    try:
        subprocess.run(
            [*prefix, f"{bindir}/initdb", "-D", str(data), "-U", "genreops", "--auth=trust"],
            check=True, capture_output=True, env=env, timeout=120,
        )  # fmt: skip
        subprocess.run(
            [*prefix, f"{bindir}/pg_ctl", "-D", str(data), "-l", str(base / "log"), "-w",
             "-o", f"-p {port} -k {base} -c listen_addresses=''", "start"],
            check=True, capture_output=True, env=env, timeout=120,
        )  # fmt: skip
        yield prefix, {**env, "PGHOST": str(base), "PGPORT": port}
    finally:
        subprocess.run(
            [*prefix, f"{bindir}/pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True, env=env, timeout=120,
        )  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


def test_init_script_creates_the_databases_idempotently(
    private_postgres: tuple[list[str], dict[str, str]], services: dict[str, dict[str, Any]]
) -> None:
    prefix, server_env = private_postgres
    container_env = environment(services["postgres"])
    env = {**server_env, **container_env, "POSTGRES_DB": "postgres"}

    def psql(user: str, db: str, sql: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, "env", *(f"{k}={v}" for k, v in env.items()),
             "psql", "-X", "-At", "-U", user, "-d", db, "-c", sql],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    for script in sorted(INIT_DIR.glob("*.sh")):
        for _ in range(2):  # a second run (a restarted init) must change nothing and not fail
            result = subprocess.run(
                [*prefix, "env", *(f"{k}={v}" for k, v in env.items()), "bash", str(script)],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
    owner, reader = container_env["POSTGRES_USER"], container_env["MONITORING_READER_USER"]
    listed = psql(owner, "postgres", "SELECT datname FROM pg_database").stdout.split()
    assert {"mlflow", "prefect", "monitoring"} <= set(listed)
    # the app creates its tables later, as the owner; Grafana's role can read, not write
    created = psql(owner, "monitoring", "CREATE TABLE seen (id int); INSERT INTO seen VALUES (7)")
    assert created.returncode == 0, created.stderr
    assert psql(reader, "monitoring", "SELECT id FROM seen").stdout.strip() == "7"
    assert psql(reader, "monitoring", "INSERT INTO seen VALUES (8)").returncode != 0
    assert psql(reader, "mlflow", "SELECT 1").returncode != 0


def test_s3_init_command_creates_the_buckets(
    s3_server: Any, services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """The one-shot s3-init command, run for real against the embedded S3 server."""
    from genreops.data.storage import s3_client

    service = services["s3-init"]
    command = service["command"]
    assert command[0] == "python"
    suffix = uuid.uuid4().hex[:8]
    buckets = {
        "GENREOPS_RAW_BUCKET": f"raw-{suffix}",
        "GENREOPS_FEATURES_BUCKET": f"features-{suffix}",
        "GENREOPS_ARTIFACTS_BUCKET": f"artifacts-{suffix}",
    }
    env = {
        **environment(service),
        **buckets,
        "GENREOPS_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "GENREOPS_S3_ACCESS_KEY_ID": s3_server.config.access_key_id,
        "GENREOPS_S3_SECRET_ACCESS_KEY": s3_server.config.secret_access_key,
        "GENREOPS_HOME": str(tmp_path),
        "PATH": os.environ["PATH"],
    }
    result = subprocess.run(
        [sys.executable, *command[1:]], env=env, cwd=tmp_path,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    client = s3_client(s3_server.config)
    for bucket in buckets.values():
        client.head_bucket(Bucket=bucket)
        assert bucket in result.stdout


# --- the monitoring configs fit the mounts ------------------------------------------------


def _load_yaml(relative: str) -> Any:
    path = ROOT / relative
    if not path.is_file():
        pytest.fail(f"{relative} is missing (mounted by docker-compose.yaml)")
    return yaml.safe_load(path.read_text())


def test_prometheus_config_fits_the_compose_network(services: dict[str, dict[str, Any]]) -> None:
    prometheus = services["prometheus"]
    flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_path = flag.split("=", 1)[1]
    on_disk = container_path_to_repo(prometheus, config_path)
    assert on_disk is not None and on_disk.is_file(), f"{config_path} is not mounted"
    config = _load_yaml(str(on_disk.relative_to(ROOT)))
    for rule_file in config.get("rule_files", []):
        inner = str(PurePosixPath(config_path).parent / rule_file)
        repo_file = container_path_to_repo(prometheus, inner)
        assert repo_file is not None and repo_file.is_file(), f"rule file {rule_file} unmounted"
    targets = {
        target
        for job in config.get("scrape_configs", [])
        for static in job.get("static_configs", [])
        for target in static.get("targets", [])
    }
    assert {"triton:8002", "node-exporter:9100"} <= targets, targets
    for target in targets:
        host = target.rsplit(":", 1)[0]
        assert host in services or host in ("localhost", "127.0.0.1"), f"unknown target {target}"


def test_grafana_provisioning_fits_the_container(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    env = environment(grafana)
    provisioning = container_path_to_repo(grafana, "/etc/grafana/provisioning")
    assert provisioning is not None and provisioning.is_dir()
    # Datasources read their addresses and credentials from the environment. (Alerting files
    # are left out: Grafana leaves their annotations, where $labels/$values belong, alone.)
    files = sorted((provisioning / "datasources").glob("*.y*ml"))
    assert files, f"no datasource files in {provisioning / 'datasources'}"
    for path in files:
        names = {name for name, _, _ in interpolated_names(yaml.safe_load(path.read_text()))}
        for name in names - {"__file", "__env", "__value"}:
            assert name in env, f"{path.relative_to(ROOT)} reads ${name}; grafana has no {name}"
    dashboards = _load_yaml("configs/grafana/provisioning/dashboards/dashboards.yml")
    for provider in dashboards.get("providers", []):
        folder = container_path_to_repo(grafana, provider["options"]["path"])
        assert folder is not None, f"dashboard path {provider['options']['path']} is not mounted"
        assert list(folder.glob("*.json")), f"no dashboards in {folder}"


# --- makefiles/compose.mk -----------------------------------------------------------------

FAKE_COMPOSE = """#!{python}
import json, os, sys
state = json.load(open(os.environ["FAKE_STATE"]))
args = sys.argv[1:]
while args and args[0].startswith("--"):
    args = args[2:]
with open(os.environ["FAKE_STATE"] + ".calls", "a") as calls:
    calls.write(" ".join(args) + "\\n")
if args[0] == "ps" and "-q" in args:
    print("\\n".join(state["containers"]))
elif args[0] == "port":
    print("127.0.0.1:" + args[2])
"""
FAKE_DOCKER = """#!{python}
import json, os, sys
path = os.environ["FAKE_STATE"]
state = json.load(open(path))
args = sys.argv[1:]
if args[0] == "inspect":
    c = state["containers"][args[-1]]
    status, health, code = c["states"].pop(0) if len(c["states"]) > 1 else c["states"][0]
    json.dump(state, open(path, "w"))
    print("/%s %s %s %s %s" % (c["name"], status, health, code, c.get("oneoff", "False")))
elif args[0] == "logs":
    print("last words of " + args[-1])
"""


def run_make_with_fake_docker(
    tmp_path: Path, containers: dict[str, Any]
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """`make build_and_up` with docker and docker-compose replaced (there is no engine here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("docker", FAKE_DOCKER), ("docker-compose", FAKE_COMPOSE)):
        (bin_dir / name).write_text(body.format(python=sys.executable))
        (bin_dir / name).chmod(0o755)
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"containers": containers}))
    result = subprocess.run(
        ["make", "--no-print-directory", "-f", str(COMPOSE_MK), "build_and_up",
         f"DC={bin_dir / 'docker-compose'}", "DC_POLL_SECONDS=0.05", "DC_WAIT_SECONDS=60"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_STATE": str(state)},
    )  # fmt: skip
    calls = (tmp_path / "state.json.calls").read_text().splitlines()
    return result, calls


def test_build_and_up_waits_for_health_then_prints_the_urls(tmp_path: Path) -> None:
    result, calls = run_make_with_fake_docker(
        tmp_path,
        {
            "c1": {"name": "genreops_mlflow_1", "states": [
                ["running", "starting", 0], ["running", "starting", 0], ["running", "healthy", 0]]},
            "c2": {"name": "genreops_s3-init_1", "states": [
                ["running", "none", 0], ["exited", "none", 0]]},
            "c3": {"name": "genreops_prefect-worker_1", "states": [["running", "none", 0]]},
            "c4": {"name": "genreops_s3-init_run_1", "oneoff": "True",
                   "states": [["exited", "none", 1]]},
        },
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls[:3] == ["config --quiet", "build", "up -d --remove-orphans"]
    assert calls.count("ps -a -q") >= 3  # polled until mlflow turned healthy
    assert "http://127.0.0.1:4200" in result.stdout  # Prefect UI
    assert "http://127.0.0.1:5000" in result.stdout  # MLflow
    assert "http://127.0.0.1:3000" in result.stdout  # Grafana
    assert "http://127.0.0.1:8002/metrics" in result.stdout


def test_build_and_up_fails_naming_the_unhealthy_service(tmp_path: Path) -> None:
    result, _ = run_make_with_fake_docker(
        tmp_path,
        {
            "c1": {"name": "genreops_mlflow_1", "states": [["running", "unhealthy", 0]]},
            "c2": {"name": "genreops_grafana_1", "states": [["running", "healthy", 0]]},
        },
    )
    assert result.returncode != 0
    assert "failed: genreops_mlflow_1" in result.stdout
    assert "last words of genreops_mlflow_1" in result.stdout
    assert "is up and healthy" not in result.stdout


def test_compose_config_target_validates() -> None:
    compose_binary()
    result = subprocess.run(
        ["make", "--no-print-directory", "-f", str(COMPOSE_MK), "compose_config"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "docker-compose.yaml is valid" in result.stdout
