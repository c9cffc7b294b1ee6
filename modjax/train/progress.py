"""tqdm progress bars for phases, updated once per epoch (never a host sync per batch)."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

__all__ = ["EpochProgress"]


class EpochProgress:
    """An epoch bar showing the running ``train_loss`` and, when logged, ``val_loss``.

    Args:
        label: phase label (the bar's description).
        n_epochs: total epochs.
        enabled: show the bar at all (``show_training_progress``).
        persist: leave the bar on screen when done (``persist_progress``).
        val_metric: metric name shown next to the train loss when present.

    Example:
        >>> from modjax.train.results import MetricStore
        >>> m = MetricStore(); m.log("train_loss", 0.5, epoch=0)
        >>> bar = EpochProgress("train", 1, enabled=False)
        >>> bar.update(0, m); bar.postfix
        {'train_loss': '0.5'}
        >>> bar.close()
    """

    def __init__(self, label: str, n_epochs: int, *, enabled: bool = True, persist: bool = False,
                 val_metric: str = "val_loss") -> None:
        self.val_metric = val_metric
        self.postfix: dict[str, str] = {}
        self._bar = tqdm(total=n_epochs, desc=label, unit="epoch", leave=persist,
                         disable=not enabled) if enabled else None

    def update(self, epoch: int, metrics: Any) -> None:
        """Advance one epoch and refresh the loss readout."""
        self.postfix = {}
        if "train_loss" in metrics:
            self.postfix["train_loss"] = f"{metrics.last('train_loss'):.4g}"
        if self.val_metric in metrics:
            v = metrics.epoch_value(self.val_metric, epoch)
            if v is not None:
                self.postfix[self.val_metric] = f"{v:.4g}"
        if self._bar is not None:
            self._bar.set_postfix(self.postfix, refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
