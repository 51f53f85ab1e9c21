"""What every method shares: the ``Outcome`` it yields per example, the ``Method`` protocol, and how a
method is built from raw config values (the CLI's flags, ``--method-arg``, a YAML file)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from latentbench.config import build_config, config_dict, config_fields
from latentbench.errors import UsageError

if TYPE_CHECKING:
    from latentbench.models import LoadedModel
    from latentbench.store import Dataset, ExampleWriter
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
    metrics: dict[str, float] = field(default_factory=dict)  # method-specific, averaged by the evaluator
    artifacts: dict[str, Any] = field(default_factory=dict)  # what ``Method.write`` saves
    truncated: list[bool] | None = None  # per output: its text budget ran out before EOS (None: not known)
    # Multi-agent methods: every turn the model read, in order, as {"role", "prompt"} (``prompt`` above is one of them)
    agent_prompts: list[dict[str, str]] | None = None


class Method(Protocol):
    """A method: ``run`` turns examples into outcomes. One that saves datasets also names the kinds it
    writes (``dataset_kinds``: kind -> extra kinds written beside it) and writes one outcome with
    ``write``; ``summarize`` (optional, a staticmethod) describes a finished dataset in one line;
    ``resolved`` (optional) gives the config as it runs on a task (see ``resolved_config``);
    ``trained_on`` (optional) names, of the examples about to be scored, those its checkpoint learned
    from, with the reason, which ``eval`` then leaves out of scoring."""

    name: ClassVar[str]
    config_class: ClassVar[type]
    dataset_kinds: ClassVar[dict[str, tuple[str, ...]]]
    config: Any

    def run(self, lm: LoadedModel, task: Task, examples: list[Example]) -> Iterator[Outcome]: ...

    def write(self, ex: ExampleWriter, outcome: Outcome, kind: str) -> None: ...

    @staticmethod
    def summarize(dataset: Dataset) -> str: ...


def resolved_config(method: Any, task: Task) -> dict[str, Any]:
    """The config values a method actually uses on ``task``: its ``resolved(task)`` where it has one (a
    budget of 0 replaced by the task card's, a system prompt the protocol does not use emptied), else
    the config as given."""
    resolve = getattr(method, "resolved", None)
    return resolve(task) if resolve is not None else config_dict(method.config)


def make_config(config_class: type, values: dict[str, Any], sources: dict[str, str] | None = None,
                seed: int | None = None) -> Any:
    """The config from raw values; the run's ``seed`` fills a ``seed`` field (one seed per run)."""
    values = dict(values)
    if seed is not None and any(f.name == "seed" for f in config_fields(config_class)):
        given = values.get("seed")
        if given is not None and str(given) != str(seed):
            where = (sources or {}).get("seed", "seed")
            raise UsageError(f"{where}: the run's seed is set with --seed (got --seed {seed})")
        values["seed"] = seed
    return build_config(config_class, values, sources)


def make_method(name: str, values: dict[str, Any] | None = None, sources: dict[str, str] | None = None,
                seed: int | None = None) -> Method:
    """A registered method with its config built from raw values."""
    from latentbench.methods import method_class

    cls = method_class(name)
    return cls(make_config(cls.config_class, values or {}, sources, seed))


def dataset_kind(method: Any, kind: str | None) -> str:
    """The kind to write: the one asked for, else the method's first; refused if it writes none."""
    kinds = list(getattr(method, "dataset_kinds", {}))
    if not kinds:
        raise UsageError(f"--method {method.name} writes no datasets (it is for eval only)")
    if kind is None:
        return kinds[0]
    if kind not in kinds:
        raise UsageError(f"--kind {kind!r}: method {method.name} writes {', '.join(kinds)}")
    return kind
