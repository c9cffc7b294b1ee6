"""modjax.data: the data layer's specialised names (views, references, plans, the device
store, column naming). FeatureSet, the samplers and Scaler are at the top level."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modjax._lazy import lazy_namespace

if TYPE_CHECKING:  # the names as static tools see them; at run time _WHERE loads them
    from modjax.data.device import DeviceStore, gather, gather_plan, make_gather
    from modjax.data.formats import DataFormat
    from modjax.data.plan import IndexPlan
    from modjax.data.references import FeatureSetColumnReference, FeatureSetReference
    from modjax.data.samplers import BaseSampler
    from modjax.data.scaling import ScalerRecord
    from modjax.data.schema import DOMAINS, REPS, SAMPLE_UUIDS, column_name, parse_column
    from modjax.data.splitters import SplitterRecord
    from modjax.data.view import FeatureSetView

_WHERE: dict[str, str] = {
    **dict.fromkeys(("DeviceStore", "gather", "gather_plan", "make_gather"), "modjax.data.device"),
    "DataFormat": "modjax.data.formats",
    "IndexPlan": "modjax.data.plan",
    **dict.fromkeys(("FeatureSetColumnReference", "FeatureSetReference"), "modjax.data.references"),
    "BaseSampler": "modjax.data.samplers",
    "ScalerRecord": "modjax.data.scaling",
    **dict.fromkeys((
        "column_name", "DOMAINS", "parse_column", "REPS", "SAMPLE_UUIDS",
    ), "modjax.data.schema"),
    "SplitterRecord": "modjax.data.splitters",
    "FeatureSetView": "modjax.data.view",
}

__all__ = [
    "BaseSampler", "column_name", "DataFormat", "DeviceStore", "DOMAINS",
    "FeatureSetColumnReference", "FeatureSetReference", "FeatureSetView", "gather",
    "gather_plan", "IndexPlan", "make_gather", "parse_column", "REPS", "SAMPLE_UUIDS",
    "ScalerRecord", "SplitterRecord",
]

__getattr__, __dir__ = lazy_namespace("modjax.data", _WHERE)
