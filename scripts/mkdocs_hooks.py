"""MkDocs hooks: the figures of ``results/`` and ``benchmarks/`` become files of the site, and
the docstrings' Sphinx roles read as plain code.

The reproduction pages embed the PNGs that the studies and benchmarks committed, where they
are (``../results/chapter2/report/scatter.png`` from ``docs/reproductions/``), instead of a
second copy under ``docs/``. The docstrings cite other names as ``:func:`name```, which
mkdocstrings renders as code preceded by the role; the role is dropped. MkDocs reads this file
through ``hooks:`` in ``mkdocs.yml``.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

FIGURE_FOLDERS = ("results", "benchmarks")
ROLE = re.compile(r":(?:func|class|data|mod|meth|attr|obj|exc):(?=<code>)")


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add every PNG under the repository's result folders to the site's files.

    Parameters
    ----------
    files
        The files MkDocs found under ``docs/``.
    config
        The site's configuration (its file's folder is the repository's root).

    Returns
    -------
    Files
        ``files`` with each figure, at its path from the repository's root.
    """
    root = Path(config.config_file_path).parent
    for folder in FIGURE_FOLDERS:
        for figure in sorted((root / folder).rglob("*.png")):
            files.append(
                File(
                    figure.relative_to(root).as_posix(),
                    src_dir=str(root),
                    dest_dir=config.site_dir,
                    use_directory_urls=config.use_directory_urls,
                )
            )
    return files


def on_page_content(html: str, **_: object) -> str:
    """Drop the Sphinx role before each cross-reference rendered as code.

    Parameters
    ----------
    html
        The page's rendered HTML.
    **_
        The page, configuration and files, unused.

    Returns
    -------
    str
        ``html`` with ``:func:<code>name</code>`` read as ``<code>name</code>``.
    """
    return ROLE.sub("", html)
