"""The CLI reference page of the documentation site (``docs/cli.md``), generated from the typer
app: every command's help, as ``clusterprior COMMAND --help`` prints it. Regenerate with
``python -m clusterprior.cli.reference > docs/cli.md`` (a test checks it is current)."""

from __future__ import annotations

from typing import Any

import typer

WIDTH = 100  # help text wrapped at a fixed width, so that the page does not depend on the terminal


def _pages(command: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    """``(words, command)`` of ``command`` and of every subcommand below it, depth first (the
    click objects typer builds; duck-typed, as typer may carry its own click)."""
    found = [(path, command)]
    if hasattr(command, "list_commands"):
        context = command.context_class(command)
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            if sub is not None and not sub.hidden:
                found += _pages(sub, [*path, name])
    return found


def markdown() -> str:
    """The reference page: a section per command with its help text."""
    from clusterprior.cli import app

    root = typer.main.get_command(app)
    lines = [
        "# Command line reference",
        "",
        "Generated from the commands' own help (`clusterprior.cli.reference`).",
        "",
    ]
    for path, command in _pages(root, ["clusterprior"]):
        context = command.context_class(
            command, info_name=" ".join(path), max_content_width=WIDTH, terminal_width=WIDTH
        )
        heading = "#" * min(len(path) + 1, 4)
        lines += [f"{heading} `{' '.join(path)}`", "", "```text", command.get_help(context), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(), end="")
