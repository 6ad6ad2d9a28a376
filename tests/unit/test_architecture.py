"""Imports run one way between the stage packages, so a change has one obvious home."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "genreops"
# lowest first: a package may import only from its own layer and those below it
LAYERS = ("core", "data", "training", "monitoring", "serving", "platform", "app")


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "genreops" or len(parts) < 2 or parts[1] not in LAYERS:
        return None
    return LAYERS.index(parts[1])


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, node.module)]
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def upward_imports() -> list[str]:
    """Every import of a higher stage, as ``file:line -> module``."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = _layer("genreops." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        if own is None:
            continue
        for line, module in _imports(path):
            target = _layer(module)
            if target is not None and target > own:
                problems.append(f"{path.relative_to(PACKAGE)}:{line} -> {module}")
    return sorted(set(problems))


def test_no_stage_imports_a_stage_above_it() -> None:
    assert upward_imports() == []


def test_every_module_belongs_to_a_stage_or_is_a_public_name() -> None:
    loose = {p.name for p in PACKAGE.glob("*.py")}
    assert loose == {"__init__.py", "audio.py", "features.py"}  # the DESIGN contract's names
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(
        LAYERS
    )


def test_every_package_ships_in_the_wheel() -> None:
    """pyproject lists packages by hand (flows, triton_models and configs are mapped in):
    a new subpackage left off the list would be missing from a non-editable install."""
    import tomllib

    config = tomllib.loads((PACKAGE.parents[1] / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(path.parent.relative_to(PACKAGE.parent).parts)
        for path in PACKAGE.rglob("__init__.py")
    }
    assert on_disk - listed == set()


def test_the_readme_tour_names_every_package() -> None:
    """The README's "A tour" table is where a newcomer looks for a change's home."""
    readme = (PACKAGE.parents[1] / "README.md").read_text()
    missing = [
        str(folder.relative_to(PACKAGE.parents[1]))
        for folder in (p.parent for p in PACKAGE.rglob("__init__.py"))
        if f"`{folder.relative_to(PACKAGE.parents[1])}/`" not in readme
        and f"`{folder.name}/`" not in readme
    ]
    assert missing == []
