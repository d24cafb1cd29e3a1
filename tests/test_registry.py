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
