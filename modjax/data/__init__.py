"""modjax.data: Arrow FeatureSets, views, references, splitters, scalers, samplers and
device-resident batches."""

from modjax.data.compat import supported_scalers
from modjax.data.device import DATA_AXIS, DeviceStore, gather, gather_plan, make_gather
from modjax.data.featureset import FeatureSet
from modjax.data.formats import DataFormat
from modjax.data.out_of_core import OutOfCoreFeatureSet  # FeatureSet.from_parquet / from_arrow_ipc
from modjax.data.plan import IndexPlan
from modjax.data.references import FeatureSetColumnReference, FeatureSetReference
from modjax.data.samplers import BaseSampler, NSampler, PairedSampler, SimpleSampler, TripletSampler
from modjax.data.scaling import Scaler, ScalerRecord
from modjax.data.schema import DOMAINS, REPS, SAMPLE_UUIDS, column_name, parse_column
from modjax.data.similarity import SimilarityCondition
from modjax.data.splitters import SplitterRecord
from modjax.data.view import FeatureSetView

__all__ = [
    "DATA_AXIS",
    "DOMAINS",
    "REPS",
    "SAMPLE_UUIDS",
    "BaseSampler",
    "DataFormat",
    "DeviceStore",
    "FeatureSet",
    "FeatureSetColumnReference",
    "FeatureSetReference",
    "FeatureSetView",
    "IndexPlan",
    "NSampler",
    "PairedSampler",
    "Scaler",
    "ScalerRecord",
    "SimilarityCondition",
    "SimpleSampler",
    "SplitterRecord",
    "TripletSampler",
    "column_name",
    "gather",
    "gather_plan",
    "make_gather",
    "parse_column",
    "supported_scalers",
]
