"""genreops installed from its wheel, not the checkout: the whole CLI journey from another folder.

Why: only an editable checkout used to work (templates, configs and the S3 server were found
relative to the source tree). Here the wheel is built from a copy of the sources, installed
non-editable into a fresh venv holding exactly requirements/runtime.txt (no dev tools; uv's
cache makes this a few seconds), and `genreops` runs in tmp_path: synth, extract, train,
register, publish, serve and predict. Nothing may be imported from the checkout.

Cost: the build and the install take ~2 s; the journey ~1 min on 2 cores, since the fresh venv
starts with the project venv's bytecode and Numba caches of the dependencies (see
_reuse_compiled_files; without them ~1.6 min).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pandas as pd
import pytest

from genreops.data.features import FEATURE_NAMES, SCHEMA_HASH
from genreops.training.search_space import FAMILIES
from helpers import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UV = str(Path(sys.executable).with_name("uv"))
# What the wheel is built from (as in .dockerignore): nothing else of the checkout is copied.
SOURCES = ("pyproject.toml", "README.md", "src", "flows", "triton_models", "configs")

# Run by the installed interpreter: where every genreops module (and the templates) come from.
WHERE = """
import importlib, json, pkgutil, sys
import genreops
from genreops.serving.publish import TEMPLATE_DIR
from genreops.training.search_space import DEFAULT_SPACE_FILE
names = [m.name for m in pkgutil.walk_packages(genreops.__path__, "genreops.")
         if ".triton_models." not in m.name and not m.name.endswith(".__main__")]
for name in names:
    importlib.import_module(name)
files = sorted(
    m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)
)
print(json.dumps({"genreops": genreops.__file__, "files": files, "imported": len(names),
                  "template": str(TEMPLATE_DIR), "space": str(DEFAULT_SPACE_FILE)}))
"""


def _run(
    argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Run and fail with both outputs when the command does."""
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{' '.join(argv)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with runtime.txt and genreops from a freshly built wheel; returns its bin/."""
    if not Path(UV).is_file():
        pytest.skip("uv is not in the project venv (make setup installs it)")
    base = tmp_path_factory.mktemp("install")
    source = base / "source"
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns(
                "__pycache__", "*.egg-info", "*.pyc"))  # fmt: skip
        else:
            shutil.copy2(path, source / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    began = time.monotonic()
    _run([UV, "build", "-q", "--wheel", "-o", str(base / "dist"), str(source)], cwd=base, env=env)
    wheel = next((base / "dist").glob("genreops-*.whl"))
    venv = base / "venv"
    _run([UV, "venv", "-q", "--python", sys.executable, str(venv)], cwd=base, env=env)
    python = str(venv / "bin" / "python")
    lock = str(ROOT / "requirements" / "runtime.txt")
    _run([UV, "pip", "sync", "-q", "--python", python, lock], cwd=base, env=env)
    _run(
        [UV, "pip", "install", "-q", "--python", python, "--no-deps", str(wheel)], cwd=base, env=env
    )
    copied = _reuse_compiled_files(Path(sysconfig.get_paths()["purelib"]), venv)
    print(
        f"wheel built and installed with runtime.txt in {time.monotonic() - began:.1f} s "
        f"({copied} compiled files of the dependencies reused)"
    )
    return venv / "bin"


def _reuse_compiled_files(site_packages: Path, venv: Path) -> int:
    """Copy the project venv's bytecode and Numba caches of the dependencies into ``venv``.

    Both venvs hold the same files of runtime.txt (uv links them from its cache), so the
    copies stay valid (Python and Numba check each source file's mtime and size, and compile
    anew where they differ). Without them every first import and librosa's JIT run again here
    (~40 s on 2 cores) for nothing under test: genreops itself (editable in the project venv)
    has no bytecode to copy and is compiled from the wheel's files."""
    [target] = list((venv / "lib").glob("python3*/site-packages"))
    copied = 0
    for cache in site_packages.rglob("__pycache__"):
        destination = target / cache.relative_to(site_packages)
        if not destination.parent.is_dir() or destination.parts[len(target.parts)] == "genreops":
            continue
        destination.mkdir(exist_ok=True)
        for compiled in cache.iterdir():
            # some wheels ship their bytecode: those are the same (hard-linked) file already
            if not (destination / compiled.name).exists():
                shutil.copy2(compiled, destination / compiled.name)
                copied += 1
    return copied


def _clean_env(home: Path, bin_dir: Path) -> dict[str, str]:
    """Like a new user's shell: only this venv, no project settings, no PYTHONPATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GENREOPS_", "PREFECT_", "AWS_", "MLFLOW_"))
        and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env["PATH"] = os.pathsep.join((str(bin_dir), env.get("PATH", "")))
    env["GENREOPS_HOME"] = str(home)
    env["COLUMNS"] = "200"
    return env


def test_nothing_comes_from_the_checkout(installed: Path, tmp_path: Path) -> None:
    """Every genreops module, flows included, and the shipped files live in site-packages."""
    env = _clean_env(tmp_path / ".genreops", installed)
    found = json.loads(_run([str(installed / "python"), "-c", WHERE], cwd=tmp_path, env=env).stdout)
    site = str(installed.parent / "lib")
    assert found["genreops"].startswith(site), found["genreops"]
    assert found["imported"] > 40  # every module, genreops.flows.* among them
    assert "genreops.flows" in " ".join(found["files"]).replace("/", ".")
    assert Path(found["template"], "predictor", "config.pbtxt").is_file()
    assert found["template"].startswith(site) and found["space"].startswith(site)
    leaked = [f for f in found["files"] if f.startswith(str(ROOT) + os.sep)]
    assert not leaked, leaked


# Run by the installed interpreter: the monitoring store's Alembic revisions from the wheel.
MIGRATE = """
import json, sys
from genreops.monitoring.store import MonitoringStore
from genreops.monitoring.store.migrate import script_directory
with MonitoringStore(sys.argv[1]) as store:
    print(json.dumps({"changes": store.ensure_schema(), "again": store.ensure_schema(),
                      "revisions": str(script_directory().dir)}))
"""


def test_the_monitoring_store_migrates_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    """The store's schema revisions ship as package data and run from site-packages."""
    env = _clean_env(tmp_path / ".genreops", installed)
    url = f"sqlite:///{tmp_path / 'monitoring.db'}"
    out = _run([str(installed / "python"), "-c", MIGRATE, url], cwd=tmp_path, env=env).stdout
    found = json.loads(out.strip().splitlines()[-1])
    assert sorted(found["changes"]) == [
        "created table alerts", "created table drift_tests", "created table labels",
        "created table model_events",
        "created table predictions",
    ]  # fmt: skip
    assert found["again"] == []
    assert found["revisions"].startswith(str(installed.parent / "lib")), found["revisions"]


def test_s3_server_is_found_through_its_setting(installed: Path, tmp_path: Path) -> None:
    """No tools/s3 next to a wheel: the error names the setting; the setting finds it."""
    env = _clean_env(tmp_path / ".genreops", installed)
    probe = "from genreops.platform.s3server import find_s3_server_command as f; print(f()[-1])"
    missing = subprocess.run(
        [str(installed / "python"), "-c", probe], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert missing.returncode != 0
    assert "GENREOPS_S3_SERVER_DIR" in missing.stderr and "npm ci --prefix" in missing.stderr
    checkout = ROOT / "tools" / "s3"
    if not (checkout / "node_modules").is_dir() or shutil.which("node") is None:
        pytest.skip("s3rver is not installed in tools/s3 (make setup)")
    env["GENREOPS_S3_SERVER_DIR"] = str(checkout)
    found = _run([str(installed / "python"), "-c", probe], cwd=tmp_path, env=env).stdout
    assert found.strip().startswith(str(checkout))


@pytest.mark.usefixtures("prefect_harness")
def test_the_cli_journey_from_another_folder(installed: Path, tmp_path: Path) -> None:
    """synth -> extract -> train (every family) -> register -> models -> publish -> serve ->
    predict: the documented journey, run by the installed console script in a shell.

    Flow runs report to the session's Prefect server rather than starting a temporary one
    per command (20-30 s each on 2 cores); the install, not Prefect, is under test here."""
    env = _clean_env(tmp_path / ".genreops", installed)
    env["PREFECT_API_URL"] = os.environ["PREFECT_API_URL"]
    genreops = str(installed / "genreops")

    def cli(*args: str) -> str:
        began = time.monotonic()
        out = _run([genreops, *args], cwd=tmp_path, env=env).stdout
        print(f"genreops {args[0]}: {time.monotonic() - began:.1f} s")
        return out

    cli("synth", "c", "--per-genre", "3", "--seconds", "6", "--workers", "2")
    assert len(list((tmp_path / "c").glob("*/*.wav"))) == 30
    extracted = cli("extract", "c", "f", "--workers", "1", "--window", "6")
    table_path = tmp_path / "f" / "features.parquet"
    assert f"feature table: {table_path}" in extracted
    table = pd.read_parquet(table_path)
    assert len(table) == 30 and list(table.columns) == ["clip_id", "genre", *FEATURE_NAMES]
    assert json.loads((tmp_path / "f" / "manifest.json").read_text())["counts"]["failed"] == 0

    trained = cli("train", "f", "--family", "all", "--trials", "2")
    for family in FAMILIES:
        assert family in trained
    assert trained.count("2/0/0") == len(FAMILIES)  # trials ok/pruned/failed per family
    registered = cli("register")
    assert "champion" in registered and "challenger" in registered
    assert "registry already up to date" in cli("register")
    models = cli("models")
    rows = [line for line in models.splitlines() if "champion" in line or "challenger" in line]
    assert len(rows) == 2 and all(SCHEMA_HASH in row for row in rows)
    published = cli("publish", "--repo", "repo")
    assert "published: version 1" in published
    rendered = tmp_path / "repo" / "preprocessor" / "1" / "model.py"
    shipped = installed.parent / "lib"
    assert (
        rendered.read_bytes()
        == next(
            shipped.glob("python3*/site-packages/genreops/triton_models/preprocessor/model.py")
        ).read_bytes()
    )

    ports = {"--http-port": free_port(), "--grpc-port": free_port(), "--metrics-port": free_port()}
    serve = [f"{flag}={port}" for flag, port in ports.items()]
    cli("serve", "--repo", "repo", "--detach", *serve)
    try:
        clip = str(sorted((tmp_path / "c").glob("*/*.wav"))[0])
        answer = cli("predict", clip, "--url", f"127.0.0.1:{ports['--grpc-port']}")
        assert "1 of 1 classified" in " ".join(answer.split()), answer
    finally:
        cli("serve", "--stop")


def test_the_editable_checkout_maps_the_same_names(tmp_path: Path) -> None:
    """`make setup`'s editable install: genreops.flows etc. resolve to the repository folders."""
    probe = (
        "import json, genreops.flows.deployments as d, genreops.serving.publish as p, "
        "genreops.training.search_space as s; "
        "print(json.dumps([d.__file__, str(p.TEMPLATE_DIR), str(s.DEFAULT_SPACE_FILE)]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    found = _run([sys.executable, "-c", probe], cwd=tmp_path, env=env).stdout
    flows, template, space = json.loads(found)
    if not flows.startswith(str(ROOT) + os.sep):
        pytest.skip(f"genreops is not installed editable from this checkout ({flows})")
    assert flows == str(ROOT / "flows" / "deployments.py")
    assert template == str(ROOT / "triton_models")
    assert space == str(ROOT / "configs" / "search_spaces.yaml")
