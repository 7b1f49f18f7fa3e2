"""Models defined elsewhere: factories by module or file, weights read without running code."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from clusterprior import UserError, models
from clusterprior.models.external import import_factory
from clusterprior.train import checkpoint

ZOO = "cp_test_external_zoo"
SOURCE = textwrap.dedent(
    """
    from __future__ import annotations

    from dataclasses import dataclass

    from torch import nn

    @dataclass
    class Config:  # a dataclass needs its module in sys.modules
        hidden: int = 8

    class Net(nn.Module):
        def __init__(self, n_classes=10):
            super().__init__()
            self.body = nn.Linear(4, 8)
            self.norm = nn.BatchNorm1d(8)
            self.fc = nn.Linear(8, n_classes)

        def forward(self, x):
            return self.fc(self.norm(self.body(x)).relu())

    def net(n_classes=10):
        return Net(n_classes)

    def not_a_module():
        return "a string"

    NOT_CALLABLE = 3
    """
)


@pytest.fixture
def zoo(tmp_path: Path, monkeypatch) -> Iterator[Path]:
    """A model module file, importable as :data:`ZOO` too (forgotten again afterwards)."""
    path = tmp_path / f"{ZOO}.py"
    path.write_text(SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield path
    sys.modules.pop(ZOO, None)


def trained(n_classes: int = 10) -> nn.Module:
    """A model of the zoo's architecture whose weights differ from a fresh one's."""
    model = models.build_external(f"{ZOO}:net", kwargs={"n_classes": n_classes})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.norm.running_mean.fill_(0.5)
    return model


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_import_factory_by_module_and_by_file(zoo):
    by_module, by_file = import_factory(f"{ZOO}:net"), import_factory(f"{zoo}:net")
    assert by_module.__name__ == by_file.__name__ == "net"
    assert type(by_file(n_classes=3)).__name__ == "Net" and by_file(n_classes=3).fc.out_features == 3
    assert import_factory("torch.nn:Linear") is nn.Linear


def test_build_external_calls_the_factory_and_returns_eval_mode(zoo):
    model = models.build_external("torch.nn:Linear", kwargs={"in_features": 4, "out_features": 2})
    assert isinstance(model, nn.Linear) and model.weight.shape == (2, 4) and not model.training
    model = models.build_external(f"{zoo}:net")
    assert model.fc.out_features == 10 and not model.training and not model.norm.training


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "torch.nn.Linear",
            r"--model expects MODULE:FACTORY, e\.g\. torchvision\.models:resnet18, got 'torch\.nn\.Linear'",
        ),
        (":net", r"--model expects MODULE:FACTORY"),
        ("torch.nn:", r"--model expects MODULE:FACTORY"),
        ("cp_no_such_module_here:f", r"cannot import cp_no_such_module_here \(ModuleNotFoundError: No module named"),
        ("missing/models.py:net", r"cannot import missing/models\.py \(FileNotFoundError: no such file"),
        ("torch.nn:NoSuchLayer", r"torch\.nn has no attribute 'NoSuchLayer'"),
        ("{zoo}:nothing", r"cp_test_external_zoo\.py has no attribute 'nothing'"),
        ("{zoo}:NOT_CALLABLE", r"NOT_CALLABLE is a int, not callable"),
    ],
)
def test_import_factory_errors(zoo, spec, message):
    with pytest.raises(UserError, match=message) as e:
        import_factory(spec.format(zoo=zoo))
    assert "\n" not in str(e.value)


def test_a_module_that_fails_while_importing(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\nraise RuntimeError('no GPU here\\nsecond line')\n")
    with pytest.raises(UserError, match=r"cannot import .*broken\.py \(RuntimeError: no GPU here\)$"):
        import_factory(f"{broken}:net")
    broken.write_text("def net(:\n")
    with pytest.raises(UserError, match=r"broken\.py \(SyntaxError: "):
        import_factory(f"{broken}:net")


def test_build_external_errors(zoo):
    with pytest.raises(UserError, match=r"returned a str, not a torch\.nn\.Module"):
        models.build_external(f"{zoo}:not_a_module")
    with pytest.raises(UserError, match=r"net: .*unexpected keyword argument 'width'"):
        models.build_external(f"{zoo}:net", kwargs={"width": 2})


@pytest.mark.parametrize(
    ("suffix", "wrap"),
    [(s, w) for s in (".pt", ".pth", ".bin") for w in ("bare", "state_dict", "model", "module.", "checkpoint")]
    + [(".safetensors", w) for w in ("bare", "module.", "checkpoint")],
)
def test_weights_round_trip(zoo, tmp_path, wrap, suffix):
    source = trained()
    state = source.state_dict()
    path = tmp_path / f"weights{suffix}"
    if wrap == "checkpoint":  # clusterprior's own checkpoints, which carry a header beside the state dict
        checkpoint.save(path, source)
    elif suffix == ".safetensors":
        prefix = "module." if wrap == "module." else ""
        save_file({prefix + k: v for k, v in state.items()}, str(path))
    else:
        obj = {
            "bare": state,
            "state_dict": {"state_dict": state, "epoch": 3},
            "model": {"model": state, "optimizer": {"lr": 0.1}},
            "module.": nn.DataParallel(source).state_dict(),
        }[wrap]
        torch.save(obj, path)
    model = models.build_external(f"{ZOO}:net", weights=path)
    assert_same_weights(model, source)
    assert not model.training


def test_a_partial_module_prefix_is_kept(zoo, tmp_path):
    state = {("module." + k if k.startswith("fc") else k): v for k, v in trained().state_dict().items()}
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(UserError, match=r"2 missing \(fc\.weight, fc\.bias\), 2 unexpected \(module\.fc\.weight"):
        models.load_weights(models.build_external(f"{ZOO}:net"), tmp_path / "w.pt")


def test_lazy_modules_take_their_shapes_from_the_file(tmp_path):
    source = nn.Linear(4, 3)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    model = nn.LazyLinear(3)
    models.load_weights(model, tmp_path / "w.pt")
    assert_same_weights(model, source)


def test_missing_and_unexpected_keys(zoo, tmp_path):
    state = trained().state_dict()
    state["head.weight"] = state.pop("fc.weight")
    del state["fc.bias"]
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(UserError) as e:
        models.load_weights(models.build_external(f"{ZOO}:net"), tmp_path / "w.pt")
    assert str(e.value) == (
        f"{tmp_path / 'w.pt'}: weights do not fit the model: 2 missing (fc.weight, fc.bias), 1 unexpected (head.weight)"
    )
    torch.save({"fc.weight": state["head.weight"]}, tmp_path / "few.pt")
    with pytest.raises(
        UserError, match=r"weights do not fit the model: 8 missing \(body\.weight, body\.bias, norm\.weight, \.\.\.\)$"
    ):
        models.load_weights(models.build_external(f"{ZOO}:net"), tmp_path / "few.pt")


def test_shape_mismatches(zoo, tmp_path):
    torch.save(trained(n_classes=10).state_dict(), tmp_path / "w.pt")
    model = models.build_external(f"{ZOO}:net", kwargs={"n_classes": 5})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UserError) as e:
        models.load_weights(model, tmp_path / "w.pt")
    assert str(e.value).endswith(
        "weights do not fit the model: fc.weight: file [10, 8], model [5, 8] (and 1 more shape mismatches)"
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "nothing was loaded"


class Custom:
    """Any object of a class of ours: unpickling it would import and call code."""

    def __init__(self) -> None:
        self.weights = [1.0, 2.0]


class Payload:
    """Unpickles as ``open(marker, "w")``: reading the file would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("kind", ["custom", "payload"])
def test_a_pickle_with_code_is_refused(tmp_path, kind):
    marker = tmp_path / "ran"
    obj = Custom() if kind == "custom" else Payload(marker)
    torch.save({"weight": torch.zeros(2, 4), "bias": torch.zeros(2), "extra": obj}, tmp_path / "w.pt")
    with pytest.raises(UserError, match=r"w\.pt: refused: not a plain file of tensors") as e:
        models.load_weights(nn.Linear(4, 2), tmp_path / "w.pt")
    assert "\n" not in str(e.value) and not marker.exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("w.pt", None, r"w\.pt: no such weights file"),
        ("w.safetensors", None, r"w\.safetensors: no such weights file"),
        ("w.pt", b"", r"w\.pt: not a readable weights file \(EOFError"),
        ("w.pt", b"hello, not weights", r"w\.pt: not a readable weights file"),
        ("w.safetensors", b"hello, not weights", r"w\.safetensors: not a readable weights file \(SafetensorError"),
    ],
)
def test_unreadable_weight_files(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(UserError, match=message) as e:
        models.load_weights(nn.Linear(4, 2), tmp_path / name)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("obj", [{"lr": 0.1}, [torch.zeros(2)], {"state_dict": {"w": 1.0}}, {}])
def test_a_file_without_a_state_dict(tmp_path, obj):
    torch.save(obj, tmp_path / "w.pt")
    with pytest.raises(UserError, match=r"w\.pt: not a state dict of tensors|weights do not fit"):
        models.load_weights(nn.Linear(4, 2), tmp_path / "w.pt")
