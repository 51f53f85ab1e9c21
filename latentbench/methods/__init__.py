"""The method registry: a method's name -> ``"module:Class"``, imported only when that method is used.

Adding a method is one line here (plus its module); ``eval``, ``generate``, ``train`` and
``latentbench methods`` find it through this table. A method class declares its ``config_class``,
the ``dataset_kinds`` it can write (kind -> extra kinds written beside it) and, for learned parts,
the trainers in ``TRAINERS`` name it.
"""

from __future__ import annotations

import importlib
from typing import Any

from latentbench.errors import UsageError

METHODS: dict[str, str] = {
    "cot": "latentbench.methods.cot:CotMethod",
    "latent-mas": "latentbench.methods.latent_mas:LatentMasMethod",
    "latent-tree": "latentbench.methods.latent_tree.method:LatentTreeMethod",
    "text-mas": "latentbench.methods.text_mas:TextMasMethod",
    "spd": "latentbench.methods.spd.method:SpdMethod",
    "halting": "latentbench.methods.halting.method:HaltingMethod",
    "gcache": "latentbench.methods.gcache.method:GCacheMethod",
}

TRAINERS: dict[str, str] = {  # trainer name (``latentbench train NAME``) -> "module:Class"
    "prm": "latentbench.methods.latent_tree.prm:PrmTrainer",
    "spd-judge": "latentbench.methods.spd.train:SpdJudgeTrainer",
    "halting": "latentbench.methods.halting.train:HaltingTrainer",
    "gcache": "latentbench.methods.gcache.train:GCacheTrainer",
}


def load_entry(spec: str) -> Any:
    """The object a ``"module:Class"`` entry names."""
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def method_class(name: str) -> Any:
    if name not in METHODS:
        raise UsageError(f"--method {name!r} is not one of {', '.join(METHODS)}")
    return load_entry(METHODS[name])


def trainer_class(name: str) -> Any:
    if name not in TRAINERS:
        known = ", ".join(TRAINERS) or "none registered yet"
        raise UsageError(f"train {name!r}: no such trainer ({known})")
    return load_entry(TRAINERS[name])
