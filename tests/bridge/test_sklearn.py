"""scikit-learn estimators as graph nodes: FitPhase, partial_fit steps, forward, saves, errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("skops")

from bridge_helpers import make_featureset, train_phase  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.ensemble import RandomForestRegressor  # noqa: E402
from sklearn.linear_model import LogisticRegression, Ridge, SGDRegressor  # noqa: E402

from modjax import EvalPhase, FitPhase, ModelGraph, ModelNode, Optimizer, SequentialMLP
from modjax.bridge import ScikitModelWrapper  # noqa: E402
from modjax.errors import ConfigError, ShapeMismatchError  # noqa: E402


def _graph(fs, model, *, label="sk"):
    enc = ModelNode("enc", SequentialMLP(output_shape=(5,), n_layers=1, hidden_dim=8),
                    upstream_ref=fs.reference())
    node = ModelNode(label, model, upstream_ref=enc)
    return ModelGraph([enc, node], optimizer=Optimizer("adam")).build(key=0)


def _model(g, label):
    return next(n.model for n in g.nodes.values() if n.label == label)


def _encoded(g, x):
    return np.asarray(g.forward({"enc": x})["enc"])


CASES = {
    "ridge": (lambda: Ridge(alpha=0.1), {}, "predict"),
    "forest": (lambda: RandomForestRegressor(n_estimators=8, max_depth=4, random_state=0), {},
               "predict"),
    "logistic": (lambda: LogisticRegression(), {"output_shape": (2,)}, "predict_proba"),
    "pca": (lambda: PCA(n_components=3), {}, "transform"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_fit_phase_then_predictions_equal_the_estimators_own(name):
    make, kw, method = CASES[name]
    fs = make_featureset(n=160, classes=name == "logistic")
    g = _graph(fs, ScikitModelWrapper(make(), **kw))
    model = _model(g, "sk")
    assert model.output_method == method
    enc_before = g.variables["params"]["enc"]
    FitPhase.from_split("fit", split="train").execute(g)
    assert "sk" in g.frozen_paths and model.is_fitted(g.variables["state"]["sk"])
    chex.assert_trees_all_equal(g.variables["params"]["enc"], enc_before)
    # the same estimator fitted by hand on the encoder's outputs
    xtr = fs.get_split("train").get_features()
    ref = make().fit(_encoded(g, xtr), fs.get_split("train").get_targets()[:, 0])
    xva = fs.get_split("val").get_features()
    want = getattr(ref, method)(_encoded(g, xva))
    got = np.asarray(g.forward({"enc": xva})["sk"])
    assert got.shape == (40, *model.output_shape)
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-5, atol=1e-6)
    # and an EvalPhase over the split gives the same outputs
    res = EvalPhase.from_split("ev", split="val").execute(g)
    out = res.stacked_tensors("sk", "outputs")
    np.testing.assert_allclose(np.sort(out.ravel()), np.sort(got.ravel()), rtol=1e-6)


def test_partial_fit_steps_inside_train_phase_equal_manual_partial_fit():
    fs = make_featureset(n=128)
    est = SGDRegressor(learning_rate="constant", eta0=0.01, shuffle=False, random_state=0)
    g = _graph(fs, ScikitModelWrapper(est, training_mode="partial_fit"))
    g.freeze(["enc"])
    phase = train_phase(node="sk", head="enc", n_epochs=2, batch_size=32)
    res = phase.execute(g, show_training_progress=False)
    losses = res.metrics.series("train_loss")
    assert losses[-1] < losses[0]
    model = _model(g, "sk")
    fitted = model.fitted_estimator(g.variables["state"]["sk"])
    # replay the sampler's batches by hand, one partial_fit per batch
    view = fs.get_split("train")
    x, y = _encoded(g, view.get_features()), view.get_targets()[:, 0]
    manual = SGDRegressor(learning_rate="constant", eta0=0.01, shuffle=False, random_state=0)
    sampler = phase.input_sources[0].sampler
    for epoch in range(2):
        plan = sampler.plan(epoch)
        for idx, mask in zip(plan.indices["default"], plan.mask["default"]):
            manual.partial_fit(x[idx[mask]], y[idx[mask]])
    np.testing.assert_allclose(fitted.coef_, manual.coef_, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g.forward({"enc": view.get_features()})["sk"])[:, 0],
                               manual.predict(x), rtol=1e-5, atol=1e-6)


def test_save_load_in_a_fresh_process_gives_identical_predictions(tmp_path):
    fs = make_featureset(n=120)
    g = _graph(fs, RandomForestRegressor(n_estimators=5, max_depth=3, random_state=0))
    FitPhase.from_split("fit", split="train").execute(g)
    x = fs.get_split("val").get_features()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.asarray(g.forward({"enc": x})["sk"]))
    fs.save(tmp_path / "fs")
    g.save(tmp_path / "g")
    code = textwrap.dedent(f"""
        import numpy as np
        from modjax import FeatureSet
        from modjax import ModelGraph
        FeatureSet.load({str(tmp_path / 'fs')!r})
        g = ModelGraph.load({str(tmp_path / 'g')!r})
        y = np.asarray(g.forward({{"enc": np.load({str(tmp_path / 'x.npy')!r})}})["sk"])
        np.testing.assert_array_equal(y, np.load({str(tmp_path / 'y.npy')!r}))
        print("same", y.shape)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "same (30, 1)"


class MyRidge(Ridge):
    """A user subclass: its type is not trusted by default when loading."""


def test_untrusted_type_refused_unless_allowed():
    fs = make_featureset(n=64)
    model = ScikitModelWrapper(MyRidge(alpha=1.0))
    g = _graph(fs, model)
    FitPhase.from_split("fit", split="train").execute(g)
    cfg = model.get_config()
    with pytest.raises(ConfigError, match=r"MyRidge.*loading refused.*allow_packaged_code"):
        ScikitModelWrapper.from_config(cfg)
    back = ScikitModelWrapper.from_config(cfg, allow_packaged_code=True)
    back.build((5,), (1,))
    x = jnp.ones((3, 5))
    chex.assert_trees_all_equal(back.apply({}, g.variables["state"]["sk"], x)[0],
                                model.apply({}, g.variables["state"]["sk"], x)[0])


def test_errors_name_the_node_and_change_nothing():
    fs = make_featureset(n=64)

    from sklearn.base import BaseEstimator

    class NoFit(BaseEstimator):
        def predict(self, x):
            return x

    with pytest.raises(TypeError, match="ModelNode 'p'.*NoFit has no fit method"):
        ModelNode("p", NoFit(), upstream_ref=fs.reference())
    with pytest.raises(ValueError, match="output_method must be one of"):
        ScikitModelWrapper(Ridge(), output_method="score")
    # the output shape of an unfitted classifier's probabilities is unknown: build error
    g = ModelGraph([ModelNode("clf", LogisticRegression(), upstream_ref=fs.reference())],
                   optimizer=Optimizer("adam"))
    with pytest.raises(ShapeMismatchError, match="node 'clf'.*output_shape=\\(n_classes,\\)"):
        g.build()
    # not fitted before an EvalPhase: clear error naming the node, nothing changed
    g = _graph(fs, Ridge())
    before = g.variables
    with pytest.raises(ValueError, match="scikit-learn node 'sk' is not fitted.*FitPhase"):
        EvalPhase.from_split("ev", split="val").execute(g)
    # graph-wise training through it: the error names the node and what to do
    FitPhase.from_split("fit", split="train", freeze_after_fit=False).execute(g)
    fitted = g.variables
    with pytest.raises(ValueError, match=r"gradient through scikit-learn node 'sk' to train "
                                         r"\['enc'\].*stage-wise"):
        train_phase(node="sk", head="enc", n_epochs=1).execute(g, show_training_progress=False)
    chex.assert_trees_all_equal(g.variables, fitted)
    assert not np.array_equal(np.asarray(before["state"]["sk"]["fit_id"]),
                              np.asarray(fitted["state"]["sk"]["fit_id"]))
    # a fitted estimator's shape mismatch is named with both shapes
    bad = _graph(make_featureset(n=64, classes=True),
                 ScikitModelWrapper(LogisticRegression(), output_shape=(3,)), label="c3")
    with pytest.raises(ShapeMismatchError, match=r"per-sample shape \(2,\).*\(3,\)"):
        FitPhase.from_split("fit", split="train").execute(bad)


def test_prefitted_estimator_needs_no_fit_phase_and_gradients_stop():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3)).astype(np.float32)
    est = Ridge().fit(x, x @ np.array([1.0, 2.0, 3.0]))
    m = ScikitModelWrapper(est)
    m.build((3,))
    p, s = m.init(jax.random.key(0), (3,))
    y = m.apply(p, s, jnp.asarray(x))[0]
    np.testing.assert_allclose(np.asarray(y)[:, 0], est.predict(x), rtol=1e-5)
    g = jax.grad(lambda xx: jnp.sum(m.apply(p, s, xx)[0]))(jnp.asarray(x))
    assert float(jnp.abs(g).sum()) == 0.0
    ys = jax.vmap(lambda xx: m.apply(p, s, xx)[0])(jnp.stack([x[:4], x[4:8]]))
    np.testing.assert_allclose(np.asarray(ys)[1, :, 0], est.predict(x[4:8]), rtol=1e-5)


def _three_class_featureset(n: int = 120):
    """Class = argmax of 3 noisy scores; the train split holds classes 0 and 1 only."""
    from modjax import FeatureSet

    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = np.argmax(x[:, :3], axis=1).astype(np.float32)
    order = np.argsort(y == 2, kind="stable")  # class-2 rows last: only val sees them
    x, y = x[order], y[order]
    data = {f"x{i}": x[:, i] for i in range(4)}
    data["y"] = y
    fs = FeatureSet.from_dict("fs3", data, [f"x{i}" for i in range(4)], "y")
    cut = int((y != 2).sum()) - 10
    fs.add_split(fs.take(np.arange(cut), label="train"), "train")
    fs.add_split(fs.take(np.arange(cut, n), label="val"), "val")
    return fs


def test_classifier_width_comes_from_the_target_column(tmp_path):
    from sklearn.linear_model import SGDClassifier

    fs = _three_class_featureset()
    assert set(np.unique(fs.get_split("train").get_targets())) == {0.0, 1.0}
    g = _graph(fs, LogisticRegression(), label="clf")  # no output_shape declared
    model = _model(g, "clf")
    assert model.output_shape == (3,) and model.classes.tolist() == [0.0, 1.0, 2.0]
    FitPhase.from_split("fit", split="train").execute(g)
    xtr, xva = (fs.get_split(s).get_features() for s in ("train", "val"))
    ref = LogisticRegression().fit(_encoded(g, xtr), fs.get_split("train").get_targets()[:, 0])
    got = np.asarray(g.forward({"enc": xva})["clf"])
    assert got.shape == (len(xva), 3)
    # classes 0/1 are the estimator's own columns; class 2 was never seen: probability 0
    np.testing.assert_allclose(got[:, :2], ref.predict_proba(_encoded(g, xva)), rtol=1e-5,
                               atol=1e-6)
    assert np.all(got[:, 2] == 0.0)
    # multi-class decision_function: one column per class, the estimator's own values
    g2 = _graph(fs, ScikitModelWrapper(LogisticRegression(), output_method="decision_function"),
                label="df")
    assert _model(g2, "df").output_shape == (3,)
    # binary decision_function: one column
    g3 = _graph(make_featureset(n=64, classes=True),
                ScikitModelWrapper(LogisticRegression(), output_method="decision_function"),
                label="bin")
    assert _model(g3, "bin").output_shape == (1,)
    # partial_fit classifiers get classes= from the target column on their first step
    pf2 = ScikitModelWrapper(SGDClassifier(loss="log_loss", random_state=0),
                             training_mode="partial_fit")
    g4 = _graph(fs, pf2, label="pf")
    p, s = g4.variables["params"]["pf"], g4.variables["state"]["pf"]
    xe = _encoded(g4, xtr)
    p, s = pf2.fit(p, s, xe, fs.get_split("train").get_targets())
    assert pf2.fitted_estimator(s).classes_.tolist() == [0.0, 1.0, 2.0]
    # the class list travels in the config: a graph rebuilt without the data keeps the width
    cfg = model.get_config()
    assert cfg["classes"] == [0.0, 1.0, 2.0]
    again = ScikitModelWrapper.from_config(cfg)
    assert again.classes.tolist() == [0.0, 1.0, 2.0]
    again.build((5,))
    assert again.output_shape == (3,)


def test_classifier_on_continuous_targets_is_a_build_error_naming_the_kind():
    fs = make_featureset(n=64)  # continuous y
    g = ModelGraph([ModelNode("clf", LogisticRegression(), upstream_ref=fs.reference())],
                   optimizer=Optimizer("adam"))
    with pytest.raises(ShapeMismatchError, match=r"node 'clf'.*output_shape=\(n_classes,\).*"
                                                 r"continuous values"):
        g.build()
