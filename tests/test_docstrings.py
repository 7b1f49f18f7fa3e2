"""Every exported name documents its parameters, returns and raises (tests/docstrings.py), and
the checker catches a docstring that does not."""

from __future__ import annotations

import ast
import textwrap

from tests import docstrings


def first_definition(source: str) -> ast.FunctionDef:
    node = ast.parse(textwrap.dedent(source)).body[0]
    assert isinstance(node, ast.FunctionDef)
    return node


def codes(source: str) -> set[str]:
    return {message.split()[0] for _, message in docstrings.check(first_definition(source))}


def test_every_exported_name_documents_its_sections():
    names = [name for name, _ in docstrings.exported()]
    assert len(names) >= 60 and "clusterprior.measures.measure" in names
    found = docstrings.violations()
    assert found == [], "\n".join(found)


def test_the_checker_fails_on_missing_and_stale_sections():
    one_line = '''
    def scale(x: float, by: float) -> float:
        """Scale x."""
        if by < 0:
            raise ValueError("negative")
        return x * by
    '''
    assert {"DOC101", "DOC103", "DOC201", "DOC501"} <= codes(one_line), "a one-line docstring does not pass"
    stale = '''
    def scale(x: float, by: float) -> float:
        """Scale x.

        Parameters
        ----------
        x
            The value.
        factor
            A parameter that no longer exists.

        Returns
        -------
        float
            x times by.
        """
        return x * by
    '''
    assert "DOC103" in codes(stale), "a stale parameter is caught"
    complete = '''
    def scale(x: float, by: float) -> float:
        """Scale x.

        Parameters
        ----------
        x
            The value.
        by
            The factor.

        Returns
        -------
        float
            x times by.

        Raises
        ------
        ValueError
            When ``by`` is negative.
        """
        if by < 0:
            raise ValueError("negative")
        return x * by
    '''
    assert codes(complete) == set()
    assert "DOC000" in codes("def bare(x):\n    return x\n"), "no docstring at all"
