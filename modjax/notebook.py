"""Notebook presentation: ``_repr_html_`` / ``_repr_markdown_`` for the main objects.

:class:`NotebookRepr` is a mixin: a class provides ``_notebook_view()`` returning a
title, a plain-text body (its summary table) and, optionally, a mermaid picture; the
mixin renders both formats from that. Jupyter shows the HTML (the table as preformatted
text, the picture as a mermaid block); ``_repr_markdown_`` gives the same for markdown
front ends (JupyterLab draws the mermaid block). This module imports nothing from the
layers, so every layer can use the mixins; the views live in ``modjax.viz.notebook``.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

__all__ = ["NotebookRepr", "GraphNotebookRepr", "FeatureSetNotebookRepr", "ResultsNotebookRepr",
           "ObserverNotebookRepr"]


def _viz() -> Any:
    from modjax.viz import notebook
    return notebook


class NotebookRepr:
    """Mixin rendering ``_notebook_view() -> (title, text, mermaid or None)``.

    Example:
        >>> class Box(NotebookRepr):
        ...     def _notebook_view(self):
        ...         return "Box", "a  1\\nb  2", None
        >>> print(Box()._repr_markdown_())
        **Box**
        <BLANKLINE>
        ```
        a  1
        b  2
        ```
        >>> "<pre>a  1" in Box()._repr_html_()
        True
    """

    def _notebook_view(self) -> tuple[str, str, str | None]:  # pragma: no cover - interface
        raise TypeError(f"{type(self).__name__} must define _notebook_view()")

    def _repr_markdown_(self) -> str:
        title, text, picture = self._notebook_view()
        out = f"**{title}**\n\n```\n{text}\n```"
        if picture:
            out += f"\n\n```mermaid\n{picture}\n```"
        return out

    def _repr_html_(self) -> str:
        title, text, picture = self._notebook_view()
        out = (f"<div class=\"modjax\"><strong>{html.escape(title)}</strong>"
               f"<pre>{html.escape(text)}</pre>")
        if picture:
            out += f"<pre class=\"mermaid\">{html.escape(picture)}</pre>"
        return out + "</div>"


# --------------------------------------------------------------------------- mixins
class GraphNotebookRepr(NotebookRepr):
    """ModelGraph presentation: summary table + mermaid picture, and DOT/SVG export."""

    def _notebook_view(self) -> tuple[str, str, str | None]:
        summary = self.summary()  # type: ignore[attr-defined]
        title, _, table = summary.partition("\n")
        return title, table, str(self.visualize())  # type: ignore[attr-defined]

    def dot(self) -> str:
        """Graphviz DOT text of the graph (``modjax.viz.notebook.model_graph_dot``)."""
        return _viz().model_graph_dot(self)

    def svg(self, path: str | Path | None = None) -> bytes:
        """SVG of :meth:`dot` through Graphviz ``dot`` (also written to ``path``)."""
        return _viz().model_graph_svg(self, path)


class FeatureSetNotebookRepr(NotebookRepr):
    """FeatureSet presentation: key table, splits, mermaid picture."""

    def _notebook_view(self) -> tuple[str, str, str | None]:
        return _viz().featureset_view(self)


class ResultsNotebookRepr(NotebookRepr):
    """Phase (group) results presentation: metric table."""

    def _notebook_view(self) -> tuple[str, str, str | None]:
        return _viz().results_view(self)


class ObserverNotebookRepr(NotebookRepr):
    """Observer presentation: history table."""

    def _notebook_view(self) -> tuple[str, str, str | None]:
        return _viz().observer_view(self)
