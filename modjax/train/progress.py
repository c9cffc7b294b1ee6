"""tqdm progress bars for phases, updated per epoch / chunk (never a host sync per batch)."""

from __future__ import annotations

from typing import Any

__all__ = ["EpochProgress"]


def _tqdm() -> Any:
    from tqdm.auto import tqdm  # on first use: importing tqdm is not free

    return tqdm


class EpochProgress:
    """An epoch bar showing the running ``train_loss`` and every metric logged for the
    epoch (``val_loss`` first, then ``val_accuracy``, ...), plus an optional batch bar
    for the sampler's batches of the current epoch.

    With ``persist=False`` (the default of ``persist_progress``) the bars are removed
    when the phase ends; with ``persist=True`` each stays with its final line, the
    last epoch's values included.

    The bars only read values already on the host (the epoch's losses come back in one
    transfer after its scan), and the batch bar advances when a scan chunk is dispatched,
    so showing progress never adds a device->host sync.

    Args:
        label: phase label (the bar's description).
        n_epochs: total epochs.
        enabled: show the epoch bar at all (``show_training_progress``).
        persist: leave the bars on screen when done (``persist_progress``).
        val_metric: metric name shown next to the train loss when present.
        show_batches: also show a batch bar per epoch (``show_sampler_progress``).
        file: stream to write to (default: tqdm's, stderr).

    Example:
        >>> import io
        >>> from modjax.train.results import MetricStore
        >>> m = MetricStore(); m.log("train_loss", 0.5, epoch=0)
        >>> bar = EpochProgress("train", 1, file=io.StringIO())
        >>> bar.update(0, m); bar.postfix
        {'train_loss': '0.5'}
        >>> bar.close()
    """

    def __init__(self, label: str, n_epochs: int, *, enabled: bool = True, persist: bool = False,
                 val_metric: str = "val_loss", show_batches: bool = False, file: Any = None
                 ) -> None:
        self.val_metric = val_metric
        self.postfix: dict[str, str] = {}
        self.label, self.persist, self.file = label, persist, file
        self.show_batches = show_batches
        self.batches_done = 0
        self._bar = _tqdm()(total=n_epochs, desc=label, unit="epoch", leave=persist,
                            file=file) if enabled else None
        self._batch_bar: Any = None

    @property
    def visible(self) -> bool:
        """Whether any bar is shown."""
        return self._bar is not None or self.show_batches

    def start_epoch(self, epoch: int, n_batches: int) -> None:
        """Open (or reset) the batch bar for an epoch of ``n_batches`` steps."""
        self.batches_done = 0
        if not self.show_batches:
            return
        if self._batch_bar is None:
            self._batch_bar = _tqdm()(total=n_batches, desc=f"{self.label} batches", unit="batch",
                                      leave=self.persist, file=self.file, position=1)
        else:
            self._batch_bar.reset(total=n_batches)
        self._batch_bar.set_description(f"{self.label} epoch {epoch} batches", refresh=False)

    def advance_batches(self, n: int) -> None:
        """Count ``n`` more batches dispatched in the current epoch."""
        self.batches_done += n
        if self._batch_bar is not None:
            self._batch_bar.update(n)

    def update(self, epoch: int, metrics: Any) -> None:
        """Advance one epoch and refresh the loss readout (nothing to do without a bar)."""
        if self._bar is None:
            return
        self.postfix = {}
        if "train_loss" in metrics:
            self.postfix["train_loss"] = f"{metrics.last('train_loss'):.4g}"
        # the validation metric first, then whatever else was logged for this epoch
        names = [self.val_metric] + [n for n in metrics.names
                                     if n not in ("train_loss", self.val_metric)]
        for name in names:
            v = metrics.epoch_value(name, epoch) if name in metrics else None
            if v is not None:
                self.postfix[name] = f"{v:.4g}"
        self._bar.set_postfix(self.postfix, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        for bar in (self._batch_bar, self._bar):
            if bar is not None:
                bar.close()
        self._bar = self._batch_bar = None
