"""Every registered method passes the shipped conformance base on a tiny random model."""

from __future__ import annotations

from typing import Any

from latentbench.methods import METHODS
from latentbench.methods.testing import MethodTests


class TestCot(MethodTests):
    method = "cot"
    config = {"max_new_tokens": 4, "batch_size": 2}


class TestCotSampled(MethodTests):
    """Sampling with several samples: the run's seed must make it reproducible."""

    method = "cot"
    config = {"max_new_tokens": 3, "batch_size": 2, "temperature": 1.0, "num_samples": 2}
    n_examples = 2


class TestLatentMas(MethodTests):
    """The default protocol: the reference's (a fresh question turn per agent)."""

    method = "latent-mas"
    config = {"max_new_tokens": 4, "agents": 2, "latent_steps": 2, "batch_size": 2}
    arch = "qwen2"


class TestLatentMasHierarchicalSampled(MethodTests):
    """The reference's hierarchical prompts, no realignment, a sampling judger: the seed must fix it."""

    method = "latent-mas"
    config = {"max_new_tokens": 4, "agents": 3, "latent_steps": 1, "batch_size": 2, "prompt": "hierarchical",
              "realign": False, "temperature": 0.8}
    n_examples = 2


class TestLatentMasCompact(MethodTests):
    method = "latent-mas"
    config = {"max_new_tokens": 4, "agents": 2, "latent_steps": 2, "batch_size": 2, "protocol": "compact"}
    arch = "qwen2"


class TestLatentTree(MethodTests):
    method = "latent-tree"
    config = {"agents": 2, "branches": 2, "latent_steps": 2, "keep": 3, "max_new_tokens": 3,
              "latent_temperature": 0.5}
    n_examples = 2

    def decoded_per_outcome(self, method: Any) -> int:
        keep = method.config.keep
        return method.config.branches ** method.config.agents if keep == "all" else keep


class TestTextMas(MethodTests):
    method = "text-mas"
    config = {"max_new_tokens": 4, "agent_max_new_tokens": 3, "agents": 2, "batch_size": 2}
    arch = "qwen2"

    def decoded_per_outcome(self, method: Any) -> int:
        return method.config.agents + 1  # every agent's text counts, the judger's included


class TestTextMasHierarchicalSampled(TestTextMas):
    config = {"max_new_tokens": 3, "agents": 3, "batch_size": 2, "prompt": "hierarchical", "temperature": 1.0}
    n_examples = 2


def test_every_registered_method_has_a_conformance_subclass() -> None:
    import importlib
    import sys
    from pathlib import Path

    for path in sorted(Path(__file__).parent.glob("test_*.py")):  # subclasses live in every test module
        if path.stem not in sys.modules:
            importlib.import_module(path.stem)
    covered = {cls.method for cls in MethodTests.__subclasses__()}
    assert set(METHODS) <= covered, set(METHODS) - covered


class TestLatentTreeCompactAllLeaves(TestLatentTree):
    config = {**TestLatentTree.config, "protocol": "compact", "keep": "all"}


class TestSpd(MethodTests):
    method = "spd"
    config = {"draft": "layers:1", "max_new_tokens": 8, "gamma": 3, "batch_size": 2, "mine": 2}
    arch = "qwen2"


class TestSpdSampled(MethodTests):
    method = "spd"
    config = {"draft": "layers:1", "max_new_tokens": 6, "gamma": 2, "batch_size": 2, "temperature": 1.0,
              "top_p": 0.9, "judge": "always"}
    arch = "qwen2"
