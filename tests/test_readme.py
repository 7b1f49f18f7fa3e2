"""The README's commands are the ones CI runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = next(line for line in ci.splitlines() if line.startswith("python3 -m venv"))
    assert f"\n{test_command}\n" in readme
    blocks = [b.split("```")[0] for b in readme.split("```bash\n")[1:3]]
    assert blocks[0].strip().endswith("clusterprior demo") and blocks[1].strip().endswith(test_command)
