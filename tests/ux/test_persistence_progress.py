"""Saving and loading show a progress bar when asked (off by default) and say what they
did on the ``modjax`` logger at INFO (one line per event, silent at the default WARNING)."""

from __future__ import annotations

import io
import logging
import re

import numpy as np
import pytest
from ux_helpers import classifier

from modjax import AppliedLoss, Experiment, InputBinding, SimpleSampler, TrainPhase
from modjax.context import ExperimentContext
from modjax.io import open_artifact


def _final_count(text: str) -> tuple[int, int]:
    """The last ``n/total`` a tqdm bar wrote."""
    counts = re.findall(r"(\d+)/(\d+) \[", text)
    assert counts, f"no progress bar in {text!r}"
    return int(counts[-1][0]), int(counts[-1][1])


def _experiment() -> Experiment:
    exp = Experiment("persist", registration_policy="overwrite")
    fs, graph = classifier()
    phase = TrainPhase("train", input_sources=[InputBinding.for_training(
        node="clf", sampler=SimpleSampler(32, shuffle=True, seed=0), split="train")],
        losses=[AppliedLoss("sparse_cross_entropy", on="clf")], n_epochs=1)
    exp.execution_plan.add_phase(phase)
    exp.run(show_training_progress=False)
    return exp


def test_graph_checkpoint_save_and_restore_draw_a_bar_over_the_parts(tmp_path, capsys):
    _, graph = classifier()
    before = {k: np.asarray(v) for k, v in graph.variables["params"]["clf"].items()
              if hasattr(v, "shape")}
    out = io.StringIO()
    graph.save_checkpoint(tmp_path / "ck", show_progress=True, progress_file=out)
    n_files = len(open_artifact(tmp_path / "ck").manifest["files"])
    # two pytree items (variables, optimizer state) written, then every file digested
    assert _final_count(out.getvalue()) == (2 + n_files, 2 + n_files)
    assert "checkpoint graph 'model-graph'" in out.getvalue()
    out = io.StringIO()
    graph.restore_checkpoint(tmp_path / "ck", show_progress=True, progress_file=out)
    # every file verified against its digest, then both items read
    assert _final_count(out.getvalue()) == (n_files + 2, n_files + 2)
    after = graph.variables["params"]["clf"]
    for k, v in before.items():
        np.testing.assert_array_equal(np.asarray(after[k]), v)
    # off by default: nothing on stderr
    graph.save_checkpoint(tmp_path / "ck2")
    graph.restore_checkpoint(tmp_path / "ck2")
    assert capsys.readouterr().err == ""


def test_progress_arguments_are_checked(tmp_path):
    _, graph = classifier()
    with pytest.raises(ValueError, match="show_progress=True needs blocking=True"):
        graph.save_checkpoint(tmp_path / "ck", show_progress=True, blocking=False)
    with pytest.raises(TypeError, match="show_progress must be True or False"):
        graph.save_checkpoint(tmp_path / "ck", show_progress="yes")
    assert not (tmp_path / "ck").exists()


def test_experiment_save_load_and_checkpoints_show_progress(tmp_path):
    exp = _experiment()
    out = io.StringIO()
    exp.save(tmp_path / "exp", show_progress=True, progress_file=out)
    assert "save experiment 'persist'" in out.getvalue()
    manifest = open_artifact(tmp_path / "exp").manifest
    n_items, n_files = len(manifest["items"]), len(manifest["files"])
    n_json = sum(f.endswith(".json") for f in manifest["files"])
    # items + JSON files + the tables writer, then every file digested
    assert _final_count(out.getvalue()) == (n_items + n_json + 1 + n_files,) * 2
    out = io.StringIO()
    with ExperimentContext().activate():
        back = Experiment.load(tmp_path / "exp", show_progress=True, progress_file=out)
        assert len(back.history) == 1
    assert "load experiment" in out.getvalue()
    assert _final_count(out.getvalue()) == (n_files + n_items,) * 2
    exp.set_checkpoint_dir(tmp_path / "cks")
    out = io.StringIO()
    exp.save_checkpoint("one", show_progress=True, progress_file=out)
    exp.restore_checkpoint("one", show_progress=True, progress_file=out)
    assert "checkpoint experiment 'persist'" in out.getvalue()
    assert "restore experiment 'persist'" in out.getvalue()


def test_restores_and_saves_log_one_info_line_each(tmp_path, caplog):
    exp = _experiment()
    graph = exp.model_graph
    exp.set_checkpoint_dir(tmp_path / "cks")
    graph.save_checkpoint(tmp_path / "g")
    assert not caplog.records  # quiet by default: the modjax logger is at WARNING
    caplog.set_level(logging.INFO, logger="modjax")

    def lines(fn):
        caplog.clear()
        fn()
        return [(r.name, r.levelno, r.getMessage()) for r in caplog.records]

    [(name, level, msg)] = lines(lambda: graph.save_checkpoint(tmp_path / "g", overwrite=True))
    assert (name, level) == ("modjax.io", logging.INFO)
    assert re.fullmatch(r"saved graph_checkpoint '.*g': 2 pytree items, \d+ files, .*B", msg)
    [(_, _, msg)] = lines(lambda: graph.restore_checkpoint(tmp_path / "g"))
    assert re.fullmatch(r"restored graph 'model-graph' from graph_checkpoint '.*g' "
                        r"\(variables, optimizer state\)", msg)
    [(_, _, msg)] = lines(lambda: exp.save_checkpoint("one"))
    assert msg.startswith("saved experiment_checkpoint ")
    [(_, _, msg)] = lines(lambda: exp.restore_checkpoint("one"))
    assert re.fullmatch(r"restored experiment 'persist' from checkpoint 'one' \(.*one\)", msg)
    # an experiment restoring a graph checkpoint: the graph's line, once
    [(_, _, msg)] = lines(lambda: exp.restore_checkpoint(tmp_path / "g"))
    assert msg.startswith("restored graph 'model-graph' from graph_checkpoint")
    [(_, _, msg)] = lines(lambda: exp.save(tmp_path / "exp"))
    assert msg.startswith("saved experiment ")
    with ExperimentContext().activate():
        [(_, _, msg)] = lines(lambda: Experiment.load(tmp_path / "exp",
                                                      checkpoint_dir=tmp_path / "cks2"))
    assert re.fullmatch(r"loaded experiment 'persist' from '.*exp' \(1 FeatureSets, 1 runs in "
                        r"its history; checkpoints copied to '.*cks2'\)", msg)
