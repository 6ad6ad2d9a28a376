"""Rewrite the per-command part of docs/cli.md from the CLI itself, so the docs cannot drift.

Run: ``.venv/bin/python tools/cli_reference.py`` (a test checks the file is current).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import typer

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
MARKER = "### `genreops synth`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _type(param: click.Parameter) -> str:
    if isinstance(param, click.Option) and param.is_flag:
        return "<bool>"
    name = getattr(param.type, "name", "value") or "value"
    text = str(param.type) if isinstance(param.type, click.IntRange | click.FloatRange) else name
    return f"<{text.lower()}>"


def _option_row(param: click.Option) -> str:
    names = ", ".join([*param.opts, *param.secondary_opts])
    meaning = param.help or ""
    if param.envvar:
        meaning += f" [env var: {param.envvar}]"
    if param.default not in (None, False, (), []) and param.show_default is not False:
        default = param.default
        if callable(default):
            default = default()
        meaning += f" [default: {default}]"
    if param.required:
        meaning += " Required."
    return f"| `{names}` | `{_type(param)}` | {_cell(meaning)} |"


def _section(path: str, command: click.Command) -> list[str]:
    ctx = click.Context(command, info_name=path)
    lines = [f"### `{path}`", "", "```", f"Usage: {path} {' '.join(command.collect_usage_pieces(ctx))}", "```", ""]
    if command.help:
        lines += [_cell(command.help.split("\n\n")[0]), ""]
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    options = [p for p in command.params if isinstance(p, click.Option) and not p.hidden]
    if arguments:
        lines += ["| argument | type | meaning |", "| --- | --- | --- |"]
        for arg in arguments:
            meaning = getattr(arg, "help", None) or ""
            lines.append(f"| `{arg.name}` | `{_type(arg)}` | {_cell(meaning)}{' Required.' if arg.required else ''} |")
        lines.append("")
    if options:
        lines += ["| option | type | meaning |", "| --- | --- | --- |"]
        lines += [_option_row(o) for o in options]
        lines.append("")
    return lines


def render() -> str:
    from genreops.app.cli import app

    group = typer.main.get_command(app)
    assert isinstance(group, click.Group)
    lines: list[str] = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        lines += _section(f"genreops {name}", command)
        if isinstance(command, click.Group):
            for sub in command.list_commands(ctx):
                subcommand = command.get_command(ctx, sub)
                if subcommand is not None and not subcommand.hidden:
                    lines += _section(f"genreops {name} {sub}", subcommand)
    head = DOC.read_text().split(MARKER)[0]
    return head + "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    for key in [k for k in os.environ if k.startswith("GENREOPS_")]:
        del os.environ[key]  # the defaults a new user sees
    DOC.write_text(render())
    sys.exit(0)
