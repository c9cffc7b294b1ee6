"""SampleData: features with the targets and tags that travel beside them.

The node-level calls (``node(sample_data)``, ``merge.forward({ref: sample_data})``) and
``ModelGraph.forward`` in its ``{(node_id, ref): sample_data}`` form take and return
SampleData: a node transforms the features; targets and tags pass through (merge nodes
combine them with their strategies). It is a pytree, so it also crosses ``jax.jit``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["SampleData", "as_jax_array", "is_torch_tensor", "like_caller"]


def is_torch_tensor(value: Any) -> bool:
    """Whether ``value`` is a torch tensor (checked without importing torch)."""
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def like_caller(value: Any, template: Any) -> Any:
    """``value`` (an array, SampleData or None) as torch tensors when ``template`` is one,
    so torch-fed node calls answer in torch; otherwise unchanged.

    Example:
        >>> import numpy as np
        >>> like_caller(np.ones(2), np.zeros(2)).tolist()
        [1.0, 1.0]
    """
    if not is_torch_tensor(template) or value is None:
        return value
    if isinstance(value, SampleData):
        return SampleData(*(like_caller(v, template) for v in value.tree_flatten()[0]))
    import torch

    return torch.from_numpy(np.array(value))


def as_jax_array(value: Any) -> Any:
    """A JAX array from a JAX/numpy array, a list or a torch tensor (None stays None).

    Example:
        >>> as_jax_array([[1.0, 2.0]]).shape
        (1, 2)
    """
    if value is None or isinstance(value, jax.Array):
        return value
    if is_torch_tensor(value):
        value = value.detach().cpu().numpy()
    return jnp.asarray(np.asarray(value))


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class SampleData:
    """A batch's features, targets and tags (batch axis first; targets/tags optional).

    Args:
        features: batched features ``(batch, *feature_shape)``.
        targets: batched targets, or None.
        tags: batched tags, or None.

    Example:
        >>> import numpy as np
        >>> sd = SampleData(features=np.zeros((4, 1, 3)), targets=np.ones((4, 1)))
        >>> sd.features.shape, sd.tags is None
        ((4, 1, 3), True)
        >>> sd.replace(features=sd.features[:, :, :2]).features.shape
        (4, 1, 2)
    """

    features: Any = None
    targets: Any = None
    tags: Any = None

    @classmethod
    def of(cls, value: Any) -> SampleData:
        """Wrap an array (features only), a ``{"features", "targets", "tags"}`` dict or
        a SampleData (returned as is)."""
        if isinstance(value, SampleData):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {"features", "targets", "tags"}
            if unknown:
                raise KeyError(f"SampleData takes features/targets/tags, got keys "
                               f"{sorted(unknown)}")
            return cls(value.get("features"), value.get("targets"), value.get("tags"))
        return cls(features=value)

    def replace(self, **changes: Any) -> SampleData:
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **changes)

    def tree_flatten(self) -> tuple[tuple[Any, Any, Any], None]:
        return (self.features, self.targets, self.tags), None

    @classmethod
    def tree_unflatten(cls, _aux: None, children: Any) -> SampleData:
        return cls(*children)

    def __repr__(self) -> str:
        def shape(v: Any) -> Any:
            return None if v is None else tuple(getattr(v, "shape", ()))
        return (f"SampleData(features={shape(self.features)}, targets={shape(self.targets)}, "
                f"tags={shape(self.tags)})")
