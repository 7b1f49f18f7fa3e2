"""Command line: ``clusterprior demo | train | measure | study ... | experiment ...``, one
module per command group; each command parses its options and calls the library.

Exit codes: 0 success, 2 bad input (one line on stderr naming the problem),
1 internal failure (with its traceback), 130 interrupted.
"""

from __future__ import annotations

import sys

import typer

from clusterprior.cli.experiment import experiment_app
from clusterprior.cli.measure import measure
from clusterprior.cli.study import demo, study_app
from clusterprior.cli.train import train
from clusterprior.errors import UserError

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Measure the natural clustering prior of deep networks (Carbonnelle 2022).",
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"clusterprior {version('clusterprior')}")
        raise typer.Exit(0)


@app.callback()
def _options(
    show_version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the installed version and exit."
    ),
) -> None:
    """Measure the natural clustering prior of deep networks (Carbonnelle 2022)."""


app.command()(demo)
app.command("train")(train)
app.command()(measure)
app.add_typer(study_app, name="study")
app.add_typer(experiment_app, name="experiment")

__all__ = ["app", "main"]


def _error(message: str) -> None:
    print(f"clusterprior: error: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the command line and turn its outcome into an exit code (never raises).

    A usage error or a :class:`~clusterprior.errors.UserError` prints one
    ``clusterprior: error: ...`` line on stderr; an interrupt prints
    ``clusterprior: interrupted``. Without arguments, the help is shown.

    Parameters
    ----------
    argv
        The arguments after the program name; ``None`` reads ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit code: 0 success (or a command's own ``typer.Exit`` code), 2 bad
        input, 130 interrupted. Other exceptions propagate with their traceback.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args or ["--help"], prog_name="clusterprior", standalone_mode=False)
        if isinstance(code, int):  # a command's typer.Exit(code) comes back as the return value
            return code
    except typer.Exit as e:
        return e.exit_code
    except typer.TyperException as e:  # bad usage: unknown option, wrong type, ... (exit code 2)
        _error(e.format_message())
        return e.exit_code
    except UserError as e:
        _error(str(e))
        return 2
    except (KeyboardInterrupt, typer.Abort):
        print("clusterprior: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
