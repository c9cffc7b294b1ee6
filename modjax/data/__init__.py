"""modjax.data: Arrow FeatureSets, views, references, splitters, scalers, samplers and
device-resident batches."""

from modjax.data.featureset import FeatureSet
from modjax.data.references import FeatureSetColumnReference, FeatureSetReference
from modjax.data.schema import DOMAINS, REPS, SAMPLE_UUIDS, column_name, parse_column
from modjax.data.view import FeatureSetView

__all__ = [
    "DOMAINS",
    "REPS",
    "SAMPLE_UUIDS",
    "FeatureSet",
    "FeatureSetColumnReference",
    "FeatureSetReference",
    "FeatureSetView",
    "column_name",
    "parse_column",
]
