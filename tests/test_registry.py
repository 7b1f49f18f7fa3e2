"""The one registry idiom: lookups of unknown names fail with one line listing the names."""

from __future__ import annotations

import pytest

from clusterprior import UserError, data, measures, models
from clusterprior.experiments import layer_rotation, winner_take_most
from clusterprior.registry import Registry, Unknown
from clusterprior.study.experiment import EXPERIMENTS


def test_an_unknown_name_is_a_user_error_and_a_key_error_listing_the_entries():
    shapes = Registry("shape", {"square": 4, "triangle": 3})
    with pytest.raises(Unknown) as caught:
        shapes["circle"]
    assert str(caught.value) == "unknown shape 'circle'; available: square, triangle"
    assert isinstance(caught.value, UserError) and isinstance(caught.value, KeyError)
    assert shapes.get("circle") is None and "circle" not in shapes and list(shapes) == ["square", "triangle"]
    assert shapes.check(["triangle"]) == ["triangle"]
    with pytest.raises(Unknown, match="'circle'"):
        shapes.check(["square", "circle"])


def test_registering_a_name_twice_is_refused_rebinding_is_explicit():
    shapes = Registry("shape", {"square": 4})
    with pytest.raises(ValueError, match="shape 'square' is registered twice"):
        shapes.register("square")(5)
    shapes["square"] = 5
    assert shapes["square"] == 5
    del shapes["square"]
    assert len(shapes) == 0


@pytest.mark.parametrize(
    "registry",
    [
        data.registry.LOADERS,
        models.BUILDERS,
        measures.CATALOGUE,
        EXPERIMENTS,
        winner_take_most.SETTINGS,
        layer_rotation.TASKS,
        layer_rotation.STUDIES,
        layer_rotation.RECORDERS,
    ],
)
def test_every_registry_of_the_package_is_one(registry):
    assert isinstance(registry, Registry) and len(registry) > 0
    with pytest.raises(Unknown, match=f"unknown {registry.kind} 'nope'"):
        registry["nope"]
