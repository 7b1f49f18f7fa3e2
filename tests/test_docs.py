"""The documentation: the README is short and its links resolve, the guide's code runs as
written, and the built site renders its figures offline in headless Chromium."""

from __future__ import annotations

import linecache
import os
import re
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import yaml

from tests.browser import headless

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line, code)`` of every ```python block, in order; ``line`` is the 1-based line of the
    block's first line of code."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]


def guide_pages() -> list[Path]:
    """The user guide's pages in the order of the site's navigation (mkdocs.yml)."""
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    guide = next(item["User guide"] for item in nav if isinstance(item, dict) and "User guide" in item)
    names = [entry if isinstance(entry, str) else next(iter(entry.values())) for entry in guide]
    return [ROOT / "docs" / name for name in names]


def run_blocks(pages: list[Path], namespace: dict) -> None:
    """Execute every python block of ``pages`` in order in ``namespace``; a failure names the
    page and line, with the page's code in the traceback."""
    for page in pages:
        for line, code in python_blocks(page.read_text(encoding="utf-8")):
            source = "\n" * (line - 1) + code  # line numbers in tracebacks are the page's
            name = f"{page.relative_to(ROOT)} (block at line {line})"
            linecache.cache[name] = (len(source), None, source.splitlines(keepends=True), name)
            try:
                exec(compile(source, name, "exec"), namespace)
            except Exception as e:
                failure = f"{name} failed: {type(e).__name__}: {e}\n{traceback.format_exc()}"
            else:
                continue
            pytest.fail(failure, pytrace=False)


def test_the_readme_is_short_and_every_link_resolves():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    links = [link.split("#")[0] for link in LINK.findall(text) if not link.startswith(("http://", "https://", "#"))]
    assert len(links) >= 10, "the README links to the documentation's pages"
    for link in links:
        assert (ROOT / link).exists(), f"README.md links to {link}, which is not in the repository"


def test_the_guide_has_every_topic_in_its_navigation():
    pages = guide_pages()
    on_disk = sorted((ROOT / "docs" / "guide").glob("*.md"))
    assert sorted(pages) == on_disk, "every guide page is in mkdocs.yml's nav, and only those"
    assert sum(len(python_blocks(p.read_text())) for p in pages) >= 10


@pytest.mark.slow  # about 15 s on 2 CPU cores
def test_the_guide_runs_as_written_page_after_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)  # the report's figures, without a display
    monkeypatch.chdir(tmp_path)  # files the guide writes land here
    run_blocks(guide_pages(), {"__name__": "__main__"})  # one namespace, as a notebook or a script


@pytest.mark.slow  # a few seconds
def test_the_readme_example_runs_on_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) == 1 and len(blocks[0][1].splitlines()) <= 10, "ten lines on the reader's own model"
    namespace: dict = {"__name__": "__main__"}
    run_blocks([README], namespace)
    values = namespace["values"]
    whole = values[values["layer"] == "all"]
    assert set(whole["measure"]) == {"c0", "c1", "c2", "c3", "c4"} and whole["value"].notna().all()


# Appended to a copy of a built page: once everything has loaded, the page says how many images
# it holds, how many failed to decode, and the narrowest one's rendered width.
PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.querySelectorAll("article img")];
  document.body.dataset.images = images.length;
  document.body.dataset.broken = images.filter(i => !i.complete || i.naturalWidth === 0).length;
  document.body.dataset.minWidth = Math.min(...images.map(i => i.getBoundingClientRect().width));
});
</script>"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documentation site, built strictly (a broken link or reference fails the build)."""
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return out


@pytest.mark.slow
def test_the_site_reads_offline(site: Path):
    """No page loads a script, a style sheet or a font from another host (web fonts are off)."""
    external = re.compile(r"<(?:script|link|img)[^>]+(?:src|href)=\"(?:https?:)?//", re.I)
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 20
    for page in pages:
        assert not external.search(page.read_text(encoding="utf-8")), f"{page} loads from another host"
    assert "fonts.googleapis" not in "".join(p.read_text(encoding="utf-8") for p in pages)


@pytest.mark.slow
def test_every_list_renders_as_a_list(site: Path):
    """No paragraph of the site holds a line that starts with "- ": Python-Markdown does not let a
    list interrupt a paragraph, so a list needs a blank line before it (in the generated blocks
    too), or it reads as one run-on paragraph of dashes."""
    paragraph = re.compile(r"<p>(.*?)</p>", re.DOTALL)
    for page in site.rglob("*.html"):
        for text in paragraph.findall(page.read_text(encoding="utf-8")):
            assert "\n- " not in text, f"{page.relative_to(site)}: a list inside a paragraph: {text[:120]!r}"


@pytest.mark.slow
@pytest.mark.parametrize(("page", "least"), [("index.html", 1), ("reproductions/chapter2/index.html", 10)])
def test_the_site_s_figures_render_in_headless_chromium(site: Path, page: str, least: int, tmp_path: Path):
    built = site / page
    probe = built.with_name("probe.html")
    probe.write_text(built.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    flags = headless(tmp_path / "profile", 4000)
    done = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=180)
    dom = done.stdout
    images = re.search(r'data-images="(\d+)"', dom)
    assert images, f"the page did not finish loading: {done.stderr[-2000:]}"
    assert int(images.group(1)) >= least, f"{page}: {images.group(1)} figures"
    assert 'data-broken="0"' in dom, f"{page}: a figure did not decode"
    assert float(re.search(r'data-min-width="([\d.]+)"', dom).group(1)) >= 300, "every figure drawn at a readable size"
