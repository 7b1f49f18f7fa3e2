"""Study specs: a TOML file, validated with pydantic, expanded into a grid of runs.

A run's resolved config is a plain dict ``{data, model, train, measures, hparams}``;
``hparams`` holds the value of every grid key for that run (what the statistics group
on). The run id is a hash of the whole resolved config, so re-running a spec finds its
finished runs again.
"""

from __future__ import annotations

import functools
import itertools
import json
import sys
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from clusterprior.errors import UserError
from clusterprior.files import fingerprint
from clusterprior.measures.catalogue import CATALOGUE
from clusterprior.measures.inputs import Settings
from clusterprior.study import experiment
from clusterprior.study.experiment import EXPERIMENTS
from clusterprior.train.config import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Strict):
    name: str = "mnist1d-hier"
    options: dict[str, Any] = Field(default_factory=dict)


class ModelSpec(_Strict):
    name: str = "mlp"
    width: float = Field(1.0, gt=0)
    depth: float = Field(1.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    batchnorm: bool = True
    options: dict[str, Any] = Field(default_factory=dict)


RUNTIME = ("seed", "device")  # training options a study sets per run (the grid's seed, the executor's device)
FIRST_TRAIN_FIELDS = (
    "epochs",
    "batch_size",
    "optimizer",
    "layca_alpha",
    "lr",
    "momentum",
    "nesterov",
    "weight_decay",
    "milestones",
    "gamma",
    "warmup_epochs",
    "augment",
    "stop_loss",
)  # the first spec's options
Point = Literal["init", "fit", "final"]  # the named points of a run at which its measures can be taken


def _final_only() -> list[Point]:
    return ["final"]


class _SpecErrors:
    """Mixed into a spec section built on :class:`~clusterprior.options.Options`: its
    validation errors stay pydantic's, with their location, for the spec's error line (pydantic
    calls a model's own ``__init__`` when it validates it inside another)."""

    def __init__(self, **values: Any) -> None:
        BaseModel.__init__(self, **values)  # type: ignore[arg-type]


class TrainSpec(_SpecErrors, TrainConfig):
    """The spec's ``[train]`` section: :class:`~clusterprior.train.TrainConfig`'s options
    (defaults, help, rules) but the two a study sets per run (``seed`` from the grid,
    ``device`` from the executor), and one more."""

    seed: int = Field(0, exclude=True)
    device: str = Field("cpu", exclude=True)
    adam_lr_scale: float = Field(1.0, gt=0, description="Adam runs use lr * adam_lr_scale (thesis: 0.01)")

    @field_validator(*RUNTIME)
    @classmethod
    def _not_per_run(cls, value: Any, info: ValidationInfo) -> Any:
        """Run only on a value the section sets (defaults are not validated): refused."""
        raise ValueError(f"{info.field_name} is set per run (the grid's seed, the executor's device), not in [train]")


def _catalogued(name: str) -> str:
    if name not in CATALOGUE:
        raise ValueError(CATALOGUE.unknown(name))
    return name


MeasureName = Annotated[str, AfterValidator(_catalogued)]


class MeasureSpec(_SpecErrors, Settings):
    """The spec's ``[measures]`` section: :class:`~clusterprior.measures.Settings` (their
    defaults, help and bounds, stated there once) and what a study adds: the measures, the
    probe subset, and when to measure."""

    names: list[MeasureName] = Field(default_factory=lambda: ["c3", "c4"], description="measures of the catalogue")
    samples: int | None = Field(None, ge=2, description="measure on a fixed random subset of the training split")
    track_every: int = Field(0, ge=0, description="measure every N epochs as well; 0 = at the end only")
    k_sweep: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=list, description="also c1 and c3 at each of these k, at the end (thesis Fig. 2.5)"
    )
    save_preactivations: bool = Field(
        False, description="keep the probe's pre-activations at each measured epoch (thesis Figs. 2.8-2.9)"
    )
    at: list[Point] = Field(
        default_factory=_final_only,
        min_length=1,
        description="named points to measure at: init (epoch 0), fit (the first epoch whose clean training loss "
        "is below fit_loss) and final (the last epoch)",
    )
    fit_loss: float = Field(
        0.02, gt=0, description="the fit point: the clean training loss (whole split, eval mode) to fall below"
    )

    @field_validator("at")
    @classmethod
    def _points_in_order(cls, at: list[Point]) -> list[Point]:
        """Each point once, in training order (the same points make the same run id)."""
        return [p for p in typing.get_args(Point) if p in at]

    def settings(self) -> Settings:
        """The measurement's :class:`~clusterprior.measures.Settings` this section sets."""
        return Settings.of(self.model_dump())

    @model_validator(mode="after")
    def _sweep_at_the_end(self) -> MeasureSpec:
        if self.k_sweep and "final" not in self.at:
            raise ValueError("k_sweep is measured at the final epoch: add 'final' to at, or leave k_sweep empty")
        return self


FIRST_MEASURE_FIELDS = (  # the first spec's measurement options (id scheme 1)
    "names",
    "sharpness_budget",
    "k_neuron",
    "k_layer",
    "layerwise_k",
    "max_samples",
    "samples",
    "track_every",
    "k_sweep",
    "save_preactivations",
)


class RunConfig(_Strict):
    """One model run of a study as the worker receives it (:func:`expand`'s plain config,
    validated): typed and frozen. ``train`` is the run's :class:`~clusterprior.train.TrainConfig`
    (its seed the grid's; options a scheme-1 config leaves out take their defaults)."""

    id: str
    data: DataSpec
    model: ModelSpec
    train: TrainConfig
    measures: MeasureSpec
    hparams: dict[str, Any]


HPARAMS = (
    ("seed", "model")
    + tuple(f for f in ModelSpec.model_fields if f not in ("name", "options"))
    + tuple(f for f in TrainSpec.model_fields if f not in ("adam_lr_scale", *RUNTIME))
)


def _check_keys(keys: list[str], where: str, allowed: tuple[str, ...] = HPARAMS) -> None:
    for key in keys:
        if key not in allowed:
            raise ValueError(f"{where}: unknown hyperparameter {key!r}; allowed: {', '.join(allowed)}")


class Paired(_Strict):
    keys: list[str]
    values: list[list[Any]]

    @model_validator(mode="after")
    def _rows(self) -> Paired:
        if len(self.keys) < 2 or len(set(self.keys)) != len(self.keys):
            raise ValueError("a paired axis needs two or more distinct keys")
        if not self.values:
            raise ValueError("empty paired axis: give at least one row of values")
        for i, row in enumerate(self.values):
            if len(row) != len(self.keys):
                raise ValueError(f"values[{i}] has {len(row)} values for {len(self.keys)} keys {self.keys}")
        return self


class GridSpec(_Strict):
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    paired: list[Paired] = Field(default_factory=list)
    exclude: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("axes")
    @classmethod
    def _axes(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in axes.items():
            if not values:
                raise ValueError(f"empty axis {key!r}: give at least one value")
        return axes

    @model_validator(mode="after")
    def _distinct(self) -> GridSpec:
        seen = list(self.axes) + [k for p in self.paired for k in p.keys]
        twice = sorted({k for k in seen if seen.count(k) > 1})
        if twice:
            raise ValueError(f"hyperparameter {twice[0]!r} appears on two axes")
        return self

    def check_keys(self, allowed: tuple[str, ...]) -> None:
        """Every key of the axes, paired axes and exclusions is one of ``allowed``."""
        _check_keys(list(self.axes), "grid.axes", allowed)
        for i, paired in enumerate(self.paired):
            _check_keys(paired.keys, f"grid.paired[{i}].keys", allowed)
        for i, rule in enumerate(self.exclude):
            _check_keys(list(rule), f"grid.exclude[{i}]", allowed)


class ExperimentSpec(_Strict):
    """A study of one of the thesis's experiments (:mod:`clusterprior.study.experiment`)
    instead of training and measuring models of the ``[data]``, ``[model]`` and ``[train]``
    sections (which it ignores)."""

    name: str = Field(description="the experiment: " + ", ".join(EXPERIMENTS))
    options: dict[str, Any] = Field(default_factory=dict, description="its options (part of every run's id)")
    local: dict[str, Any] = Field(
        default_factory=dict, description="this machine's options, e.g. a data folder (not part of a run's id)"
    )

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in EXPERIMENTS:
            raise ValueError(EXPERIMENTS.unknown(name))
        return name


IdScheme = Literal[1, 2]
LATEST_SCHEME: IdScheme = 2


class StudySpec(_Strict):
    """A study spec: one TOML file (:func:`parse`, :func:`load`), validated and frozen, that
    :func:`expand` turns into the grid of runs. Unknown keys are refused, and the grid may set
    only the hyperparameters the runs accept (the models', or the experiment's ``HPARAMS``).

    Parameters
    ----------
    name
        The study's name.
    id_scheme
        How a model study's run ids are computed: 1 or 2, unset for the folder's or the
        latest (the field's description has the details).
    storage
        Where the runs put their files, a path or fsspec URI; default: the study directory.
    data
        The ``[data]`` section: the data set and its options.
    model
        The ``[model]`` section: the architecture, its width, depth, dropout, batchnorm and
        options.
    train
        The ``[train]`` section: the training options but the per-run seed and device.
    measures
        The ``[measures]`` section: which measures, their settings, and when to measure.
    grid
        The ``[grid]`` section: the axes, paired axes and excluded combinations of the
        hyperparameters.
    experiment
        The ``[experiment]`` section: run one of the thesis's experiments instead of training
        and measuring models; ``None`` for a model study.
    """

    name: str = "study"
    id_scheme: IdScheme | None = Field(
        None,
        description="how a model study's run ids are computed (run_id): 1, the first studies' (the whole "
        "resolved config; options added since, at their defaults, left out); 2, the options that differ from "
        "their defaults. Unset: the scheme its study folder records when it resumes one, else the latest. "
        "An experiment's run ids are the same under both",
    )
    storage: str | None = Field(
        None,
        description="where runs put their files: a path or fsspec URI every worker reaches (default: the study "
        "directory); not part of a run's id",
    )
    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    measures: MeasureSpec = Field(default_factory=MeasureSpec)
    grid: GridSpec = Field(default_factory=GridSpec)
    experiment: ExperimentSpec | None = None

    @model_validator(mode="after")
    def _grid_keys(self) -> StudySpec:
        """The grid sets only what the runs accept: the hyperparameters of the models, or the
        experiment's own (its ``HPARAMS``)."""
        own = HPARAMS if self.experiment is None else tuple(experiment.module(self.experiment.name).HPARAMS)
        self.grid.check_keys(own)
        return self


def _error_line(source: str, error: ValidationError) -> str:
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        parent = _model_at(first["loc"][:-1])
        allowed = (
            ", ".join(n for n, f in parent.model_fields.items() if not f.exclude) if parent else "see the documentation"
        )
        message = f"unknown key; allowed: {allowed}"
    elif "input" in first and first["loc"] and first["type"] != "literal_error":  # literal errors list the choices
        message += f" (got {first['input']!r})"
    return f"{source}: {loc}: {message}" if first["loc"] else f"{source}: {message}"


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: Any = StudySpec
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) and hasattr(model, "model_fields") else None
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return model


def parse(text: str, source: str = "spec") -> StudySpec:
    """Validate TOML text; any problem is a :class:`UserError` naming the field.

    Parameters
    ----------
    text
        The spec as TOML.
    source
        What the error messages call the text (a file's path, say).

    Returns
    -------
    StudySpec
        The validated spec.

    Raises
    ------
    UserError
        When the text is not valid TOML, or not a valid spec (the first problem, with its
        field).
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{source}: not valid TOML ({e})") from None
    try:
        return StudySpec.model_validate(raw)
    except ValidationError as e:
        raise UserError(_error_line(source, e)) from None


def load(path: str | Path) -> StudySpec:
    """Read and validate a study spec file (:func:`parse`, its errors naming the file).

    Parameters
    ----------
    path
        The TOML file.

    Returns
    -------
    StudySpec
        The validated spec.

    Raises
    ------
    UserError
        When there is no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such study spec")
    return parse(path.read_text(), str(path))


def recorded(folder: str | Path) -> StudySpec:
    """The spec a study folder records (``study.toml``, written by the last run), with the id
    scheme of its runs: a record without one predates the schemes, scheme 1."""
    spec = load(Path(folder) / "study.toml")
    return spec if spec.id_scheme else spec.model_copy(update={"id_scheme": 1})


def for_folder(spec: StudySpec, folder: str | Path) -> StudySpec:
    """``spec`` with the id scheme it runs under in ``folder``: the folder's recorded scheme
    when it holds a study (a spec asking for another one is refused: its runs would all be
    new), else the spec's, else the latest."""
    if not (Path(folder) / "study.toml").is_file():
        return spec.model_copy(update={"id_scheme": scheme_of(spec)})
    scheme = recorded(folder).id_scheme
    if spec.id_scheme not in (None, scheme):
        raise UserError(
            f"{folder}: its runs have id scheme {scheme}, the spec asks for {spec.id_scheme}; "
            "drop id_scheme from the spec to resume, or run it into a new folder"
        )
    return spec.model_copy(update={"id_scheme": scheme})


def _combinations(grid: GridSpec) -> list[dict[str, Any]]:
    """Cartesian product of the plain axes and the rows of each paired axis, in spec order."""
    blocks: list[list[dict[str, Any]]] = [[{key: v} for v in values] for key, values in grid.axes.items()]
    blocks += [[dict(zip(p.keys, row, strict=True)) for row in p.values] for p in grid.paired]
    return [{k: v for part in combo for k, v in part.items()} for combo in itertools.product(*blocks)]


def _excluded(combo: dict[str, Any], rules: list[dict[str, Any]]) -> bool:
    return any(all(combo.get(k) == v for k, v in rule.items()) for rule in rules)


def run_id(config: dict[str, Any], scheme: IdScheme = 1) -> str:
    """A stable hash of a resolved run ``config`` under id ``scheme``.

    Scheme 1 hashes the config as :func:`resolve` gives it under scheme 1 (the options added
    after the first studies left out at their defaults, :func:`_drop_new_defaults`). Scheme 2
    hashes the scheme's number, the data section, the grid values and, of the model, training
    and measurement sections, the options that differ from their defaults: an option added
    later, at its default, changes no id, with no list of the first options to keep."""
    if scheme == 1 or "experiment" in config:
        return fingerprint(config)
    defaults = _section_defaults()
    deciding = {
        part: {k: v for k, v in config[part].items() if k not in defaults[part] or v != defaults[part][k]}
        for part in defaults
    }
    return fingerprint({"id_scheme": 2, "data": config["data"], "hparams": config["hparams"], **deciding})


@functools.cache
def _section_defaults() -> dict[str, dict[str, Any]]:
    """Every option of the model, training and measurement sections at its default (the
    training seed's too), computed once: what scheme 2 leaves out of a run's hash."""
    return {
        "model": ModelSpec().model_dump(),
        "train": {**TrainSpec().model_dump(), "seed": 0},
        "measures": MeasureSpec().model_dump(),
    }


def scheme_of(spec: StudySpec) -> IdScheme:
    """The spec's id scheme, the latest when it sets none."""
    return spec.id_scheme or LATEST_SCHEME


def resolve(spec: StudySpec, combo: dict[str, Any]) -> dict[str, Any]:
    """The full config of the run that sets the grid values ``combo`` (under id scheme 1, the
    options added since the first studies left out at their defaults)."""
    model = spec.model.model_dump()
    train = spec.train.model_dump()
    seed = 0
    for key, value in combo.items():
        if key == "seed":
            seed = value
        elif key == "model":
            model["name"] = value
        elif key in model:
            model[key] = value
        else:
            train[key] = value
    try:
        ModelSpec.model_validate(model)
        TrainSpec.model_validate(train)
    except ValidationError as e:
        raise UserError(_error_line(f"grid value {combo}", e)) from None
    measures = spec.measures.model_dump()
    if scheme_of(spec) == 1:
        _drop_new_defaults(train, (*FIRST_TRAIN_FIELDS, "adam_lr_scale"), TrainSpec().model_dump())
        _drop_new_defaults(measures, FIRST_MEASURE_FIELDS, MeasureSpec().model_dump())
    scale = train.pop("adam_lr_scale")
    if train["optimizer"] == "adam":
        train["lr"] = train["lr"] * scale
    train["seed"] = int(seed)
    return {
        "data": spec.data.model_dump(),
        "model": model,
        "train": train,
        "measures": measures,
        "hparams": {k: combo.get(k) for k in axis_names(spec)},
    }


def _drop_new_defaults(section: dict[str, Any], first: tuple[str, ...], defaults: dict[str, Any]) -> None:
    """Leave out of a resolved ``section`` the options added after the first studies (not in
    ``first``) that hold their default, so that the run ids (hashes of the config) of the
    studies written before them stay the same."""
    for key in [k for k in section if k not in first and section[k] == defaults[k]]:
        del section[key]


def axis_names(spec: StudySpec) -> list[str]:
    return list(spec.grid.axes) + [k for p in spec.grid.paired for k in p.keys]


def resolve_experiment(spec: StudySpec, combo: dict[str, Any]) -> dict[str, Any]:
    """The config of an experiment's run that sets the grid values ``combo``: the experiment's
    name, what its ``configure`` resolves (every option that decides the result) and the
    grid values."""
    assert spec.experiment is not None
    module = experiment.module(spec.experiment.name)
    return {
        "experiment": spec.experiment.name,
        "run": module.configure(dict(combo), dict(spec.experiment.options)),
        "hparams": {k: combo.get(k) for k in axis_names(spec)},
    }


def expand(spec: StudySpec) -> list[dict[str, Any]]:
    """Every run of the study, each with its ``id`` (a hash of its resolved config under the
    spec's id scheme, :func:`run_id`), in grid order (exclusions removed); an experiment's runs
    also carry the spec's ``local`` options, outside the hash.

    Parameters
    ----------
    spec
        The study spec.

    Returns
    -------
    list[dict[str, Any]]
        One plain config per run: ``{id, data, model, train, measures, hparams}`` for a model
        study, ``{id, experiment, run, hparams, local}`` for an experiment.
    """
    runs = []
    for combo in _combinations(spec.grid):
        if _excluded(combo, spec.grid.exclude):
            continue
        if spec.experiment is None:
            config = resolve(spec, combo)
            runs.append({"id": run_id(config, scheme_of(spec)), **config})
        else:
            config = resolve_experiment(spec, combo)
            runs.append({"id": run_id(config), **config, "local": dict(spec.experiment.local)})
    return runs


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if value == value else "nan"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dump(spec: StudySpec) -> str:
    """The resolved spec (every default filled in) as TOML that :func:`parse` reads back."""
    lines = []
    for section, values in spec.model_dump().items():
        if values is None:
            continue
        if not isinstance(values, dict):
            lines.append(f"{section} = {_toml_value(values)}")
            continue
        lines.append(f"\n[{section}]")
        lines += [f"{key} = {_toml_value(v)}" for key, v in values.items() if v is not None]
    return "\n".join(lines).lstrip() + "\n"
