"""What every method shares: the ``Outcome`` it yields per example, the ``Method`` protocol, the registry."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from latentbench.errors import UsageError

if TYPE_CHECKING:
    from latentbench.models import LoadedModel
    from latentbench.tasks import Example, Task


@dataclass
class Outcome:
    """One example's run: the text the evaluator scores, its cost, and the artifacts generators save."""

    example: Example
    prompt: str  # the exact text given to the model (chat template applied)
    outputs: list[str]  # one per sample (n > 1 only for pass@k)
    generated_tokens: int  # decoded text tokens, all samples
    forward_passes: int  # model forward calls that served this example (batched calls count once each)
    latent_steps: int = 0  # latent (non-text) positions this example used
    latent_budget: int | None = None  # latent positions it was allowed (None: no budget)
    artifacts: dict[str, Any] = field(default_factory=dict)


class Method(Protocol):
    name: str
    config: Any  # the method's config dataclass: the one source of its defaults

    def run(self, lm: LoadedModel, task: Task, examples: list[Example]) -> Iterator[Outcome]: ...


def build_config(config_cls: type, options: dict[str, str]) -> Any:
    """A config dataclass from ``key=value`` strings (the CLI's ``--method-arg``), typed by its fields."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    values: dict[str, Any] = {}
    for key, raw in options.items():
        name = key.replace("-", "_")
        if name not in fields:
            raise UsageError(f"--method-arg {key}: unknown option; {config_cls.__name__} has {', '.join(fields)}")
        default = fields[name].default
        kind = type(default) if default is not dataclasses.MISSING and default is not None else str
        try:
            values[name] = (raw.lower() in ("1", "true", "yes")) if kind is bool else kind(raw)
        except ValueError as err:
            raise UsageError(f"--method-arg {key}={raw}: expected a {kind.__name__}") from err
    return config_cls(**values)


def get_method(name: str, options: dict[str, str] | None = None) -> Method:
    """Instantiate a method by name; imports are lazy so the CLI starts fast."""
    if name == "cot":
        from latentbench.methods.cot import CotConfig, CotMethod

        return CotMethod(build_config(CotConfig, options or {}))
    if name == "latent-mas":
        from latentbench.methods.latent_mas import LatentMasConfig, LatentMasMethod

        return LatentMasMethod(build_config(LatentMasConfig, options or {}))
    if name == "latent-tree":
        from latentbench.methods.latent_tree import LatentTreeMethod
        from latentbench.methods.latent_tree_config import LatentTreeConfig

        return LatentTreeMethod(build_config(LatentTreeConfig, options or {}))
    raise UsageError(f"--method {name!r} is not one of {', '.join(METHODS)}")


METHODS = ("cot", "latent-mas", "latent-tree")
