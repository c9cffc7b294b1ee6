"""ExperimentCollection: grouping, per-member results equal to solo runs, comparison
views, persistence and the errors that name the member."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from modjax import EvalPhase, Experiment
from modjax.train.collection import ExperimentCollection

from .helpers import max_diff, task, train_phase, validation


def _template(label="tpl", hyper=True, epochs=3, names=None):
    exp, fs, g, mse = task(label, hyper=hyper, names=names)
    exp.execution_plan.add_phase(train_phase(mse, epochs=epochs, callbacks=[validation(mse)]))
    exp.execution_plan.add_phase(EvalPhase.from_split("test", split="val", losses=[mse]))
    return exp, fs, g, mse


def test_template_members_run_as_one_group_and_match_solo_runs(tmp_path):
    exp, fs, g, mse = _template()
    start = g.variables
    members = {f"lr{lr}_s{s}": {"seed": s, "hyperparams": {"lr": lr}}
               for lr in (1e-3, 3e-2) for s in (0, 1)}
    members["half"] = {"loss_weights": {mse.label: 0.5}}
    coll = ExperimentCollection(template=exp, members=members)
    assert coll.groups() == [list(members)]
    res = coll.run()
    assert set(res) == set(members) and all(m.vectorized == ["train"] for m in coll.members.values())
    assert max_diff(g.variables, start) == 0.0  # the template is left as it was
    solo = ExperimentCollection(template=exp, members={"lr0.03_s1": members["lr0.03_s1"]})
    solo.run()
    assert solo["lr0.03_s1"].vectorized == []  # a lone member runs the ordinary phases
    a, b = coll.histories()["lr0.03_s1"], solo.histories()["lr0.03_s1"]
    assert a.keys() == b.keys() and "train.val_loss" in a and "test.tpl_mlp.mse" in a
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-6)
    h = coll.histories()
    assert h["lr0.03_s0"]["train.train_loss"][-1] < h["lr0.001_s0"]["train.train_loss"][-1]
    tr = res["half"].get_train_result("train")
    assert tr.n_epochs == 3 and tr.losses().where(epoch=0).values()  # the usual result objects
    # load_member puts a member's trained variables into the template's graph
    coll.load_member("lr0.03_s1")
    solo.load_member("lr0.03_s1")
    v_solo = g.variables
    coll.load_member("lr0.03_s1")
    assert max_diff(g.variables, v_solo) < 1e-6


def test_experiment_members_group_by_structure():
    # separate Experiments (own contexts, own data) whose graphs have equal definitions
    e1, *_ = _template("e1", hyper=False, names="same")
    e2, *_ = _template("e2", hyper=False, names="same")
    e3, _, g3, mse3 = task("e3", hidden=4, names="same")  # another architecture: runs on its own
    e3.execution_plan.add_phase(train_phase(mse3, epochs=3, callbacks=[validation(mse3)]))
    e3.execution_plan.add_phase(EvalPhase.from_split("test", split="val", losses=[mse3]))
    coll = ExperimentCollection([e1, e2, e3])
    assert coll.groups() == [["e1", "e2"], ["e3"]]
    coll.run()
    assert coll["e1"].vectorized == ["train"] and coll["e3"].vectorized == []
    # Experiment members keep their final state, as after Experiment.run()
    assert e1.model_graph.variables is not None
    assert "e3" in coll.table() and len(coll.table().splitlines()) == 4


def test_table_csv_plot_and_persistence(tmp_path):
    exp, fs, g, mse = _template(epochs=2)
    coll = ExperimentCollection(template=exp, members={"a": {"seed": 0}, "b": {"seed": 1}})
    coll.run()
    text = coll.table()
    header = text.splitlines()[0].split()
    assert header[:3] == ["member", "overrides", "epochs"] and "seed=1" in text
    rows = list(csv.reader(open(coll.to_csv(tmp_path / "t.csv"))))
    assert rows[0][:3] == ["member", "overrides", "epochs"] and [r[0] for r in rows[1:]] == ["a", "b"]
    assert "train.val_loss final" in rows[0] and "test.tpl_mlp.mse" in rows[0]
    html = coll.plot_html(tmp_path / "p.html").read_text()
    assert "<svg" in html and "train.val_loss" in html and "http://" not in html.replace(
        "http://www.w3.org/2000/svg", "")
    coll.save(tmp_path / "c")
    with pytest.raises(FileExistsError):
        coll.save(tmp_path / "c")
    loaded = ExperimentCollection.load(tmp_path / "c", template=exp)
    assert loaded.table() == text and loaded.labels == ["a", "b"]
    loaded.load_member("b")
    vb = g.variables
    coll.load_member("b")
    assert max_diff(vb, g.variables) == 0.0
    # each member's checkpoint is an ordinary graph checkpoint
    coll.load_member("a")
    va = g.variables
    g.set_variables(g.init(7))
    g.restore_checkpoint(tmp_path / "c" / "members" / "a")
    assert max_diff(va, g.variables) == 0.0
    with pytest.raises(ValueError, match="pass template="):
        ExperimentCollection.load(tmp_path / "c")


def test_errors_name_the_member():
    exp, fs, g, mse = _template(hyper=False)
    with pytest.raises(TypeError, match="unknown override 'sed'.*seed"):
        ExperimentCollection(template=exp, members={"m": {"sed": 1}})
    coll = ExperimentCollection(template=exp, members={"m": {"hyperparams": {"lr": 0.1}}})
    with pytest.raises(ValueError, match="member 'm'.*HyperOptimizer"):
        coll.run()
    coll = ExperimentCollection(template=exp, members={"w": {"loss_weights": {"nope": 1.0}}})
    with pytest.raises(KeyError, match="member 'w': no loss 'nope'"):
        coll.run()
    with pytest.raises(ValueError, match="already has a member 'w'"):
        coll.add_member("w", seed=1)
    with pytest.raises(TypeError, match="expects an Experiment"):
        ExperimentCollection([object()])
    with pytest.raises(ValueError, match="no members"):
        ExperimentCollection().run()
    assert isinstance(exp, Experiment)
