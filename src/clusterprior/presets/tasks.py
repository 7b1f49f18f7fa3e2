"""The thesis's tasks of Chapter 4 (thesis Table 4.1) and, apart from them, the settings of the
layer-rotation studies on each task: one :class:`Task` (the data, the model and its
schedule: what decides a run besides its optimizer) and one :class:`StudySettings` (what the
studies set over it) per name, in two registries with the same names; the task of the
features of Fig. 4.10; the thesis's rate constants."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from clusterprior.errors import UserError
from clusterprior.registry import Registry

# (alpha, rho(0)) of the exploration (Fig. 4.1): the alpha sweep at rho(0) = 3^-3 and the rho(0) sweep at alpha = 0
EXPLORATION = [(a, 3.0**-3) for a in (-0.6, -0.3, 0.0, 0.3, 0.6)] + [(0.0, 3.0**-k) for k in (2, 4, 5)]
# the thesis's default Layca rates (thesis Algorithm 1; the authors' get_optimized_training_schedule)
LAYCA_RATES = {"sgd": 3.0**-3, "rmsprop": 3.0**-3, "adagrad": 3.0**-3, "adam": 3.0**-5, "sgd-amom": 3.0**-5}
# the adaptive methods' own rates on the CPU task (PyTorch's usual defaults; Adagrad's is 1e-2)
ADAPTIVE_LR = {"adam": 1e-3, "rmsprop": 1e-3, "adagrad": 1e-2}


def _below(milestones: tuple[int, ...], epochs: int) -> tuple[int, ...]:
    return tuple(m for m in milestones if m < epochs)


@dataclass(frozen=True)
class Task:
    """A data set, a model and its training schedule (thesis Table 4.1); ``init="he_uniform"``
    re-initialises the kernels He-uniform. Every field decides a run's result."""

    data: str
    model: str
    epochs: int
    milestones: tuple[int, ...]
    gamma: float = 0.2
    augment: bool = False
    batch_size: int = 128
    data_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    init: str = "default"
    note: str = field(default="", compare=False)

    def with_epochs(self, epochs: int) -> Task:
        """The task trained for ``epochs`` epochs, its milestones kept below them."""
        if epochs < 1:
            raise UserError(f"epochs must be >= 1, got {epochs}")
        return replace(self, epochs=epochs, milestones=_below(self.milestones, epochs))


@dataclass(frozen=True)
class StudySettings:
    """What the thesis's layer-rotation studies set over a task (thesis Table 4.1, Figs. 4.3-4.8): ``sgd``, its
    best "vanilla" SGD (no momentum, except Nesterov on C100-WRN); ``weight_decay`` (PyTorch's,
    2 x Keras's l2) and ``decay_schedule``, what SGD + weight decay sets over ``sgd`` and the
    task's schedule (the thesis's exceptions for C10-CNN2 and C100-WRN); ``warmup_lr`` and
    ``warmup_epochs``, the warm-up study's rate and lengths; ``adaptive``, each adaptive
    method's rate (``adaptive_weight_decay`` for the thesis's "+L2" runs)."""

    sgd: dict[str, Any] = field(default_factory=lambda: {"optimizer": "sgd", "momentum": 0.0, "lr": 3.0**-1})
    weight_decay: float = 2e-3
    decay_schedule: dict[str, Any] = field(default_factory=dict)
    warmup_lr: float = 3.0**-1
    warmup_epochs: tuple[int, ...] = (0, 5, 10, 15)
    adaptive: dict[str, float] = field(default_factory=lambda: dict(ADAPTIVE_LR))
    adaptive_weight_decay: float = 0.0

    def with_epochs(self, epochs: int) -> StudySettings:
        """The settings for a task trained ``epochs`` epochs: the decay schedule's milestones
        kept below them."""
        schedule = dict(self.decay_schedule)
        if "milestones" in schedule:
            schedule["milestones"] = _below(tuple(schedule["milestones"]), epochs)
        return replace(self, decay_schedule=schedule)


TASKS: Registry[Task] = Registry(
    "task",
    {
        "cpu": Task("mnist1d-hier", "cnn", 30, (20, 27), note="2 CPU cores, minutes: a small 1-D CNN on MNIST-1D"),
        # thesis Table 4.1, for a GPU with the CIFAR archives; our zoo's closest architectures:
        "C10-CNN1": Task(
            "cifar10",
            "vgg",
            100,
            (80, 90, 97),
            model_options={"stages": [32, 64, 128, 256], "convs": 6},
            note="25-layer VGG-style CNN (ours: BN before ReLU; the thesis: Conv-ReLU-BN)",
        ),
        "C100-resnet": Task(
            "cifar100",
            "wrn",
            100,
            (70, 90, 97),
            gamma=0.1,
            model_options={"stages": [16, 32, 64], "blocks": 5},
            note="ResNet-32 (ours: pre-activation blocks)",
        ),
        "C10-CNN2": Task(
            "cifar10",
            "vgg",
            250,
            (100, 170, 220),
            augment=True,
            model_options={"stages": [64, 128, 256, 512, 512], "convs": 3},
            note="VGG-16-like torch-blog CNN without dropout (ours: 3 convs in every stage, no dense head)",
        ),
        "C100-WRN": Task(
            "cifar100",
            "wrn",
            250,
            (100, 170, 220),
            augment=True,
            model_options={"stages": [160, 320, 640], "blocks": 4},
            note="WRN-28-10 (the thesis adds dropout 0.3)",
        ),
        "C10-resnet": Task(
            "cifar10",
            "wrn",
            200,
            (60, 120, 160),
            augment=True,
            model_options={"stages": [16, 32, 64], "blocks": 18},
            note="ResNet-110, the warm-up study's task (ours: pre-activation blocks)",
        ),
    },
)

STUDY_SETTINGS: Registry[StudySettings] = Registry(  # by task name, as TASKS
    "task",
    {
        # 3^-1 needs no warm-up on the CPU task; 3^1 is the large rate that does
        "cpu": StudySettings(warmup_lr=3.0, warmup_epochs=(0, 2, 5)),
        "C10-CNN1": StudySettings(adaptive={"rmsprop": 3.0**-6}),
        "C100-resnet": StudySettings(adaptive={"adam": 3.0**-5}),
        "C10-CNN2": StudySettings(
            weight_decay=1e-3,
            decay_schedule={"lr": 0.5, "milestones": tuple(range(25, 250, 25)), "gamma": 0.5},
            adaptive={"rmsprop": 3e-4},
            adaptive_weight_decay=1e-3,
        ),
        "C100-WRN": StudySettings(
            sgd={"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "lr": 3.0**-2},
            weight_decay=1e-3,
            # the thesis: 200 epochs, x0.2 at 60, 120, 160; here within the task's 250 epochs
            decay_schedule={"lr": 0.1, "milestones": (60, 120, 160), "gamma": 0.2},
            adaptive={"adam": 3e-4},
            adaptive_weight_decay=1e-3,
        ),
        "C10-resnet": StudySettings(adaptive={}),  # the thesis runs no adaptive method on it
    },
)

# the features of Fig. 4.10 (thesis Ch. 4): Dense(784) -> BN -> ReLU -> Dense on reduced MNIST, He-uniform
# kernels (Layca keeps their norm), batch 2048, the rate divided by 5 at each milestone of a run
FEATURES_HIDDEN = 784
FEATURES_TASK = Task(
    "mnist",
    "mlp",
    100,
    (),
    gamma=0.2,
    batch_size=2048,
    model_options={"hidden": (FEATURES_HIDDEN,), "batchnorm": True},
    init="he_uniform",
)
