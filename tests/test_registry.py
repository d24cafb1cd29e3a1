"""Registries own the names: validation, help and errors ask them; no torch to know a model name."""

import subprocess
import sys

import pytest

from ktup.config import Config
from ktup.errors import ConfigError
from ktup.registry import MODELS, OPTIMIZERS, PROTOCOLS, REGISTRIES, SPLITS, Registry


def test_registry_lookup_and_one_line_error():
    reg = Registry("thing", "x.thing")
    reg.register("a", "ktup.errors:ConfigError")
    reg.register("b", 42)
    assert reg.choices() == ("a", "b") and list(reg) == ["a", "b"] and "a" in reg and "z" not in reg
    assert reg.get("a") is ConfigError and reg["b"] == 42          # lazy "module:attr" resolved on use
    with pytest.raises(ConfigError, match=r"^x\.thing: must be one of a, b; got 'z'$"):
        reg.get("z")
    with pytest.raises(ValueError):
        reg.register("a", 1)


@pytest.mark.parametrize("key,reg", [("model.model", MODELS), ("train.optimizer", OPTIMIZERS),
                                     ("data.split", SPLITS), ("eval.protocol", PROTOCOLS)])
def test_config_validation_asks_the_registry(key, reg):
    with pytest.raises(ConfigError, match=f"{key}: must be one of {', '.join(reg.choices())}; got 'nosuch'"):
        Config().update({key: "nosuch"})


def test_every_registered_entry_resolves():
    for reg in REGISTRIES.values():
        for name in reg:
            reg.get(name)


def test_model_names_known_without_torch():
    code = ("import sys; from ktup.config import Config; from ktup.registry import MODELS; "
            "Config().update({'model.model': 'bpr'}); print(MODELS.help()); assert 'torch' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == " | ".join(MODELS.choices())


# ----------------------------------------------------------- a model's own options
def _toy_model():
    from dataclasses import dataclass

    from ktup.models.bpr import BPRMF

    @dataclass
    class ToyOptions:
        layers: int = 2
        reg: float = 0.1

    class Toy(BPRMF):
        name = "toy"
        Options = ToyOptions

        @classmethod
        def build(cls, config, dataset):
            m = super().build(config, dataset)
            m.opts = config.options_for(cls.name)
            return m

    return Toy


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(MODELS._targets, "toy", _toy_model())
    return MODELS["toy"]


def test_model_options_nested_typed_and_round_trip(toy, tmp_path):
    from tests._model_fakes import fake_dataset
    from ktup.models import build_model

    path = tmp_path / "c.yaml"
    path.write_text("model:\n  model: toy\n  embedding_size: 4\n  toy:\n    layers: 3\n")
    cfg = Config.from_yaml(path)
    cfg.apply_overrides(["model.toy.reg=0.5"])
    assert cfg.model.options_for() == toy.Options(layers=3, reg=0.5)
    d = cfg.to_dict()
    assert d["model"]["toy"] == {"layers": 3, "reg": 0.5} and "options" not in d["model"]
    again = Config.from_dict(d, saved=True)                    # a saved run's config.yaml reloads
    assert again.model.options_for() == toy.Options(layers=3, reg=0.5)
    assert build_model(again.model, fake_dataset()).opts.layers == 3
    assert Config().model.options_for("toy") == toy.Options()  # defaults when nothing is set


def test_model_options_errors_name_the_key(toy):
    with pytest.raises(ConfigError, match=r"unknown config key 'model.toy.layerz' \(toy's own options: layers, reg\)"):
        Config().apply_overrides(["model.toy.layerz=3"])
    with pytest.raises(ConfigError, match=r"model\.toy\.layers: expected int, got 'many'"):
        Config().update({"model": {"model": "toy", "toy": {"layers": "many"}}})
    with pytest.raises(ConfigError, match=r"model\.nosuch\.x: must be one of"):
        Config().apply_overrides(["model.nosuch.x=1"])
    with pytest.raises(ConfigError, match="unknown config key 'options'"):
        Config().update({"options": {}})


def test_models_without_options_refuse_any(toy):
    with pytest.raises(ConfigError, match=r"'model.bpr.x' \(bpr's own options: none\)"):
        Config().apply_overrides(["model.bpr.x=1"])
