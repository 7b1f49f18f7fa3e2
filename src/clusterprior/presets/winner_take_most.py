"""The settings of the winner-take-most experiments of Chapter 3 (thesis §3.1-3.3): the base
run, the ablations of Fig. 3.4, the links to standard practice and the 2-class MNIST variant
(not in ``all``: it reads the user's idx files)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clusterprior.registry import Registry


@dataclass(frozen=True)
class Setting:
    """One experiment of thesis §3.1-3.3; ``thesis`` is its test accuracy (%) in the thesis,
    a (low, high) range for the ablations."""

    thesis: float | tuple[float, float]
    note: str
    data: str = "synthclust"
    data_options: dict[str, Any] = field(default_factory=dict)
    hidden: tuple[int, ...] = (1000,)
    activation: str = "relu"
    batchnorm: bool = False
    input_dropout: float = 0.0
    epochs: int = 400
    milestones: tuple[int, ...] = (375,)
    lr: float = 3.0**-3
    batch_size: int | None = None  # None: full batch
    reduced: int | None = None  # training examples kept per cluster
    random_pretrain: bool = False  # pre-train on the full inputs with random cluster -> class labels
    standard_test_noise: float | None = None  # also test on this noise level
    neurons_per_layer: int = 50
    heavy: bool = False  # hours on 2 CPU cores at full scale


ABLATION = (80.0, 84.0)
DEEP: dict[str, Any] = dict(
    hidden=(1000,) * 5, batchnorm=True, epochs=1000, milestones=(950,), neurons_per_layer=10, heavy=True
)
SETTINGS: Registry[Setting] = Registry(
    "setting",
    {
        "base": Setting(96.1, "1 hidden layer of 1000 ReLUs, full SynthClust"),
        "no-relu": Setting(ABLATION, "ablation: linear hidden layer", activation="linear"),
        "one-neuron": Setting(ABLATION, "ablation: a single hidden neuron", hidden=(1,), neurons_per_layer=1),
        "noise-0.1": Setting(
            ABLATION, "ablation: noise std 0.1 on both splits", data_options={"noise": 0.1}, standard_test_noise=0.4
        ),
        "reduced": Setting(80.98, "1,500 training examples (50 per cluster)", reduced=50),
        "reduced-dropout": Setting(88.57, "reduced data + input dropout 0.5", reduced=50, input_dropout=0.5),
        "random-pretrain": Setting(
            88.13,
            "pre-trained on the 15,000 inputs with random cluster labels, then reduced",
            reduced=50,
            random_pretrain=True,
        ),
        "deep": Setting(97.68, "5 hidden layers x 1000 with BN, 1000 epochs", **DEEP),
        "deep-slow": Setting(84.07, "5 hidden layers, learning rate / 27", lr=3.0**-3 / 27, **DEEP),
        "mnist": Setting(
            98.0,
            "2-class MNIST (0-4 vs 5-9) from the user's idx files, BN, batch 20,000",
            data="mnist",
            data_options={"target": "binary"},
            batchnorm=True,
            epochs=100,
            milestones=(85,),
            batch_size=20_000,
        ),
    },
)
IN_ALL = [name for name in SETTINGS if name != "mnist"]
