"""The README's commands are the ones CI runs."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = next(line for line in ci.splitlines() if line.startswith("python3 -m venv"))
    assert f"\n{test_command}\n" in readme
    blocks = [b.split("```")[0] for b in readme.split("```bash\n")[1:3]]
    assert blocks[0].strip().endswith("clusterprior demo") and blocks[1].strip().endswith(test_command)


def test_the_method_page_names_code_that_exists_and_nothing_cites_a_private_spec():
    """docs/method.md names the code of each formula: every dotted ``clusterprior.…`` name it
    gives resolves (a module, or an attribute of one); the repository cites the thesis and the
    method page, never a specification users do not have (its name is in no tracked file)."""
    import importlib
    import re

    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "method.md").read_text()
    names = sorted(set(re.findall(r"`(clusterprior(?:\.\w+)+)`", text)))
    assert len(names) >= 10
    for name in names:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
                break
            except ModuleNotFoundError:
                continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)  # AttributeError names the stale reference
    cited = subprocess.run(["git", "grep", "-nwE", "S" + "PEC"], cwd=root, capture_output=True, text=True)
    assert cited.stdout == "", cited.stdout


def test_the_cli_reference_page_is_the_commands_help():
    """docs/cli.md is generated from the typer app: regenerate it with
    ``python -m clusterprior.cli.reference > docs/cli.md`` when a command changes."""
    from clusterprior.cli.reference import markdown

    page = (ROOT / "docs" / "cli.md").read_text()
    assert page == markdown(), "stale docs/cli.md: python -m clusterprior.cli.reference > docs/cli.md"
    assert "#### `clusterprior study run`" in page and "#### `clusterprior experiment layer-rotation`" in page
