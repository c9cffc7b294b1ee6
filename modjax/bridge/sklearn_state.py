"""Fitted scikit-learn estimators held on the host, and their pickle-free persistence.

A fitted estimator is an opaque host object, so the graph's variables hold a *fit id*
(``uint32[4]``, all zeros while unfitted) and the wrapper keeps ``{fit id: estimator}``.
A fit never changes an existing entry: a new fit (``FitPhase``) or a ``partial_fit`` step
adds a new id, so any variables pytree, including an older checkpoint or the snapshot a
failed phase restores, still names the estimator it was made with.

Estimators are written with ``skops`` (no pickle). Loading accepts types from numpy,
scipy and scikit-learn; any other type (a user's estimator subclass) is refused, naming
it, unless the caller passes ``allow_packaged_code=True``.
"""

from __future__ import annotations

import base64
import copy
import uuid
from collections import OrderedDict
from typing import Any

import numpy as np

from modjax.errors import ConfigError

__all__ = ["FitTable", "dumps_estimator", "loads_estimator", "UNFITTED", "id_hex"]

#: the fit id of a node that has not been fitted
UNFITTED = np.zeros((4,), np.uint32)
#: packages whose types a saved estimator may use without ``allow_packaged_code``
TRUSTED_PACKAGES = ("sklearn", "numpy", "scipy", "builtins")
#: ``partial_fit`` entries kept besides the pinned (batch-fitted) ones
MAX_STEP_FITS = 64


def id_hex(fit_id: Any) -> str:
    """A fit id as 32 hex characters."""
    return np.asarray(fit_id, np.uint32).reshape(4).tobytes().hex()


def _id_array(hex_id: str) -> np.ndarray:
    return np.frombuffer(bytes.fromhex(hex_id), np.uint32).copy()


def dumps_estimator(est: Any) -> str:
    """``est`` as base64 text of its skops file (no pickle)."""
    import skops.io as sio

    return base64.b64encode(sio.dumps(est)).decode("ascii")


def loads_estimator(text: str, *, allow_packaged_code: bool, what: str) -> Any:
    """Read :func:`dumps_estimator` output, refusing untrusted types.

    Raises:
        ConfigError: the file names a type outside numpy/scipy/scikit-learn and
            ``allow_packaged_code`` is False (the message names the types).
    """
    import skops.io as sio

    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as e:
        raise ConfigError(f"{what}: the saved estimator is not a readable skops file: {e}") from e
    refused = [t for t in untrusted if t.split(".")[0] not in TRUSTED_PACKAGES]
    if refused and not allow_packaged_code:
        raise ConfigError(
            f"{what}: the saved estimator uses types {refused} that are not from numpy, scipy or "
            "scikit-learn; loading refused. Pass allow_packaged_code=True if you trust this "
            "file's code")
    return sio.loads(data, trusted=list(untrusted))


class FitTable:
    """``{fit id: fitted estimator}`` of one wrapper.

    Entries from a batch fit (and the estimator passed in already fitted) are pinned;
    ``partial_fit`` steps add unpinned entries of which the newest ``MAX_STEP_FITS`` are
    kept.

    Example:
        >>> t = FitTable()
        >>> i = t.add("est", pinned=True)
        >>> t.get(i, what="node"), i.dtype.name
        ('est', 'uint32')
    """

    def __init__(self) -> None:
        self._fits: OrderedDict[str, Any] = OrderedDict()
        self._pinned: set[str] = set()
        self._latest: str | None = None
        self._text: dict[str, str] = {}

    def add(self, est: Any, *, pinned: bool) -> np.ndarray:
        """Store ``est`` under a fresh id; returns the id."""
        key = uuid.uuid4().hex
        self._fits[key] = est
        self._latest = key
        if pinned:
            self._pinned.add(key)
        else:
            steps = [k for k in self._fits if k not in self._pinned]
            for old in steps[:-MAX_STEP_FITS]:
                del self._fits[old]
                self._text.pop(old, None)
        return _id_array(key)

    def get(self, fit_id: Any, *, what: str) -> Any:
        """The estimator of ``fit_id``.

        Raises:
            ValueError: unfitted (zero id) or an id this wrapper does not hold.
        """
        key = id_hex(fit_id)
        if key == id_hex(UNFITTED):
            raise ValueError(f"{what} is not fitted: fit it first (a FitPhase, or partial_fit "
                             "steps in a TrainPhase)")
        try:
            return self._fits[key]
        except KeyError:
            raise ValueError(f"{what}: fitted state {key} is no longer held (an old partial_fit "
                             "step, or variables from another model)") from None

    def copy_of(self, fit_id: Any, *, what: str) -> Any:
        """A deep copy of the estimator of ``fit_id`` (to fit further without changing it)."""
        return copy.deepcopy(self.get(fit_id, what=what))

    def to_config(self) -> dict[str, str]:
        """``{fit id hex: skops base64}`` of the pinned entries and the newest one."""
        keep = [k for k in self._fits if k in self._pinned or k == self._latest]
        for k in keep:
            if k not in self._text:
                self._text[k] = dumps_estimator(self._fits[k])
        return {k: self._text[k] for k in keep}

    @classmethod
    def from_config(cls, entries: dict[str, str], *, allow_packaged_code: bool,
                    what: str) -> FitTable:
        table = cls()
        for key, text in entries.items():
            try:
                _id_array(key)
            except ValueError:
                raise ConfigError(f"{what}: bad fit id {key!r} in config") from None
            table._fits[key] = loads_estimator(text, allow_packaged_code=allow_packaged_code,
                                               what=what)
            table._pinned.add(key)
            table._text[key] = text
            table._latest = key
        return table
