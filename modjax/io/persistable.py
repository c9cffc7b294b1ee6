"""Persistence mixins inherited by the stateful shell classes.

``FeatureSet``, ``ModelGraph``, the FlowBuilder ``Graph`` and ``Experiment`` inherit
these so that file formats live in ``modjax.io`` while the methods (``save``,
``load``, ``save_checkpoint``, ``restore_checkpoint``, ``load_subgraph_checkpoint``)
appear on the objects users hold. See docs/architecture.md "Persistence seam" for
what each host class must expose.
"""

from __future__ import annotations

__all__ = ["FeatureSetPersistence", "GraphPersistence", "ExperimentPersistence"]


class FeatureSetPersistence:
    """Parquet/JSON ``save``/``load`` for FeatureSet."""


class GraphPersistence:
    """Config + Orbax ``save``/``load`` and checkpoints for ModelGraph and flow Graphs."""


class ExperimentPersistence:
    """Experiment ``save``/``load`` and named checkpoints."""
