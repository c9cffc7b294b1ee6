"""How-to 02: wrap models in ModelNodes; build, call, chain, freeze, serialize them.

The ModularML how-to "Create and Use a ModelNode" on modjax. The built-in models are
modjax's JAX ``SequentialMLP``/``SequentialCNN`` (same constructor arguments); torch and
scikit-learn models are bridged. A node's learned values live in a graph's variables
pytree: node-level calls read the graph that built the node (or the node's own values
after ``build_model``), and ``node.save``/``node.load`` write and read the node's subtree
checkpoint. Run: ``python examples/howto/02_modelnode.py``.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import optax

from modjax import (
    Experiment,
    FeatureSet,
    ModelGraph,
    ModelNode,
    Optimizer,
    SequentialCNN,
    SequentialMLP,
)
from modjax.data import DataFormat
from modjax.graph import SampleData


def shapes(name: str, model: object) -> None:
    print(f"{name} built: {model.is_built}")
    print(f"  input_shape:  {model.input_shape}")
    print(f"  output_shape: {model.output_shape}")


def bridged_nodes(fs_ref: object) -> None:
    """torch modules and scikit-learn estimators, wrapped automatically (host bridges)."""
    try:
        import torch
        from sklearn.ensemble import RandomForestRegressor
    except ImportError:  # the bridges are optional extras
        print("torch / scikit-learn not installed: bridged nodes skipped")
        return

    class MyEncoder(torch.nn.Module):
        def __init__(self, in_features: int, out_features: int) -> None:
            super().__init__()
            self.in_features, self.out_features = in_features, out_features
            self.fc = torch.nn.Linear(in_features, out_features)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)

    class CustomModel(torch.nn.Module):
        """Takes its shapes under its own parameter names."""

        def __init__(self, in_shape: tuple, out_shape: tuple) -> None:
            super().__init__()
            self.out_shape = tuple(out_shape)
            self.fc = torch.nn.Linear(int(np.prod(in_shape)), int(np.prod(out_shape)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.reshape(x.shape[0], -1)).reshape(x.shape[0], *self.out_shape)

    from sklearn.linear_model import SGDRegressor

    from modjax.bridge import ScikitModelWrapper, TorchModelWrapper

    wrapped = TorchModelWrapper(model=MyEncoder(10, 4))
    print(f"Wrapped model built: {wrapped.is_built}")
    wrapped.build(input_shape=(10,), output_shape=(4,))
    print(f"After build: {wrapped.is_built}  output_shape: {wrapped.output_shape}")
    lazy = TorchModelWrapper(model_class=MyEncoder,
                             model_kwargs={"in_features": 10, "out_features": 4})
    print(f"Lazy wrapped built: {lazy.is_built}")
    lazy.build(input_shape=(10,), output_shape=(4,))
    print(f"After build: {lazy.is_built}  output_shape: {lazy.output_shape}")
    injected = TorchModelWrapper(model_class=CustomModel, model_kwargs={},
                                 inject_input_shape_as="in_shape",
                                 inject_output_shape_as="out_shape")
    injected.build(input_shape=(10,), output_shape=(4,))
    print(f"Custom wrapped output_shape: {injected.output_shape}")
    for est in (RandomForestRegressor(n_estimators=50, random_state=42),
                SGDRegressor(random_state=42)):
        sk = ScikitModelWrapper(model=est)
        print(f"{type(est).__name__}: supports partial_fit: {sk.supports_partial_fit}, "
              f"training mode: {sk.resolved_training_mode}")

    custom = ModelNode(label="MyCustomEncoder", model=MyEncoder(10, 4), upstream_ref=fs_ref)
    print(f"{custom.label}: model type {type(custom.model).__name__}, backend {custom.backend}")
    forest = ModelNode(label="RandomForest",
                       model=RandomForestRegressor(n_estimators=50, random_state=42),
                       upstream_ref=fs_ref)
    print(f"{forest.label}: model type {type(forest.model).__name__}, backend {forest.backend}")

    # ModularML's torch optimizer spellings run as the optax optimizer with the same update
    by_class = Optimizer(torch.optim.AdamW, opt_kwargs={"lr": 1e-3, "weight_decay": 1e-4})
    by_factory = Optimizer(factory=lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9),
                           backend="torch")
    print(f"By class:   {by_class.cls}")
    print(f"By factory: {by_factory}")


def main() -> dict:
    warnings.simplefilter("ignore")  # repeated labels are overwritten on purpose
    Experiment(label="create_modelnode", registration_policy="overwrite")
    rng = np.random.default_rng(42)
    fs = FeatureSet.from_dict(label="SensorData",
                              data={"voltage": list(rng.standard_normal((500, 10))),
                                    "soh": list(rng.standard_normal((500, 1)))},
                              feature_keys="voltage", target_keys="soh")
    print(fs)
    fs_ref = fs.reference(features="voltage", targets="soh")

    # -- built-in models: shapes now (eager) or at build time (lazy)
    shapes("Eager MLP", SequentialMLP(input_shape=(1, 10), output_shape=(1, 1), n_layers=3,
                                      hidden_dim=64, activation="gelu", dropout=0.1))
    shapes("Lazy MLP", SequentialMLP(output_shape=(1, 1), n_layers=2, hidden_dim=32))
    shapes("CNN", SequentialCNN(input_shape=(1, 10), output_shape=(1, 1), n_layers=2,
                                hidden_dim=16, kernel_size=3, pooling=2))
    bridged_nodes(fs_ref)

    # -- nodes and optimizers (optax by name, or any optax transformation)
    node_mlp = ModelNode(label="MyMLP",
                         model=SequentialMLP(output_shape=(1, 1), n_layers=2, hidden_dim=32),
                         upstream_ref=fs_ref)
    print(f"{node_mlp.label}  is_built: {node_mlp.is_built}  backend: {node_mlp.backend}")
    by_name = Optimizer("adam", opt_kwargs={"lr": 1e-3}, backend="torch")
    by_transform = Optimizer(optax.adamw(1e-3, weight_decay=1e-4))
    print(f"By name: {by_name.name}  By transformation: {type(by_transform).__name__}")
    with_opt = ModelNode(label="TrainableMLP", model=SequentialMLP(output_shape=(1, 1)),
                         upstream_ref=fs_ref, optimizer=by_name)
    print(f"Has optimizer: {with_opt.optimizer is not None}")

    # -- build and call a node on its own
    node_mlp.build_model(input_shape=(1, 10), output_shape=(1, 1))
    print(f"is_built: {node_mlp.is_built}  input_shape: {node_mlp.input_shape}  "
          f"output_shape: {node_mlp.output_shape}")
    fsv = fs_ref.resolve()
    sample_data = SampleData(features=fsv.get_features(fmt=DataFormat.NUMPY),
                             targets=fsv.get_targets(fmt=DataFormat.NUMPY))
    print(f"Input features: {sample_data.features.shape}")
    output = node_mlp(sample_data)
    print(f"Output features: {output.features.shape}")
    print(f"Targets passed through: {output.targets.shape}")
    auto = ModelNode(label="AutoBuild", model=SequentialMLP(output_shape=(1, 1), n_layers=1,
                                                            hidden_dim=16), upstream_ref=fs_ref)
    print(f"Before forward: is_built={auto.is_built}")
    auto(sample_data)
    print(f"After forward:  is_built={auto.is_built}  input_shape: {auto.input_shape}  "
          f"output_shape: {auto.output_shape}")

    # -- chaining: a node reads another node
    encoder = ModelNode(label="Encoder", upstream_ref=fs_ref,
                        model=SequentialMLP(output_shape=(1, 8), n_layers=2, hidden_dim=32))
    regressor = ModelNode(label="Regressor", upstream_ref=encoder,
                          model=SequentialMLP(output_shape=(1, 1), n_layers=1, hidden_dim=16))
    print(f"Encoder upstream:   {encoder.upstream_ref.resolve()}")
    print(f"Regressor upstream: {regressor.upstream_ref.resolve().label}")
    graph = ModelGraph(nodes=[encoder, regressor], optimizer=by_name).build()
    chained = regressor(encoder(sample_data))
    same = np.array_equal(np.asarray(chained.features),
                          np.asarray(graph.forward({"SensorData": sample_data.features})[
                              "Regressor"]))
    print(f"Chained calls equal graph forward: {same}")

    # -- freezing (in a graph: the optimizer leaves frozen values bit-identical)
    print(f"Frozen: {node_mlp.is_frozen}")
    node_mlp.freeze()
    print(f"After freeze:   {node_mlp.is_frozen}")
    node_mlp.unfreeze()
    print(f"After unfreeze: {node_mlp.is_frozen}")
    encoder.freeze()
    print(f"Graph frozen nodes: {[n.label for n in graph.frozen_nodes.values()]}")
    encoder.unfreeze()

    # -- serialization: config (structure) and state (values)
    print("Config keys:", list(node_mlp.get_config().keys()))
    state = node_mlp.get_state()
    print("State keys:", list(state.keys()))
    print("Model weight keys:", list(state["model"]["weights"].keys())[:3], "...")
    with tempfile.TemporaryDirectory() as tmp:
        path = node_mlp.save(Path(tmp) / "my_mlp", overwrite=True)
        twin = ModelNode(label="MyMLPCopy", upstream_ref=fs_ref,
                         model=SequentialMLP(output_shape=(1, 1), n_layers=2, hidden_dim=32))
        twin.load(path)
        equal = np.array_equal(np.asarray(twin(sample_data).features),
                               np.asarray(node_mlp(sample_data).features))
        print(f"Models equal: {equal}")
    return {"node": node_mlp, "output": output, "graph": graph}


if __name__ == "__main__":
    main()
