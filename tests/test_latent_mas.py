"""latent-mas (both protocols) and text-mas on a tiny random model: turns, caches, hand-offs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from latentbench.errors import UsageError
from latentbench.methods.base import make_method
from latentbench.models import tiny_model
from latentbench.tasks import get_task


@pytest.fixture(scope="module")
def lm():
    return tiny_model("qwen2", seed=0)


@pytest.fixture(scope="module")
def gsm8k(data_dir: Path):
    task = get_task("gsm8k")
    return task, task.examples(limit=3, data_dir=data_dir)


def _run(lm: Any, task: Any, examples: list, method: str, **config: Any) -> list:
    torch.manual_seed(0)
    return list(make_method(method, config, seed=0).run(lm, task, examples))


def _record(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, snapshot: Any = None) -> list:
    """Wrap ``module.name`` to record each call's arguments (or ``snapshot(*args)`` of them, taken before
    the call: caches grow in place) and result."""
    calls: list = []
    real = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        seen = snapshot(*args) if snapshot else args
        out = real(*args, **kwargs)
        calls.append((seen, kwargs, out))
        return out

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_latentmas_gives_every_agent_and_the_judger_a_fresh_question_turn(lm, gsm8k, monkeypatch) -> None:
    import latentbench.methods.latent_ops as latent_ops
    import latentbench.models.latent as latent

    task, examples = gsm8k
    calls = _record(monkeypatch, latent_ops, "prefill")
    monkeypatch.setattr(latent, "prefill", latent_ops.prefill)  # the judger's prefill, inside greedy_decode
    outcomes = _run(lm, task, examples, "latent-mas", agents=3, latent_steps=2, max_new_tokens=2, batch_size=3)
    turns = calls[:4]  # three agents' turns, then the judger's prompt; decoding steps follow
    for index, ((_, ids, mask), _, _) in enumerate(turns):
        for row, ex in enumerate(examples):
            text = lm.tokenizer.decode(ids[row][mask[row].bool()])
            assert text.count(ex.question) == 1 and text.count("<|im_start|>system") == 1
            assert ("Target Question:" in text) == (index == 3)  # the reference's judger prompt
    assert outcomes[0].prompt.startswith("<|im_start|>system") and "Planner Agent" in outcomes[0].prompt


def test_judger_cache_holds_each_agents_turn_and_latents(lm, gsm8k, monkeypatch) -> None:
    """Per row (ragged questions, left padded), the cache in front of the judger has exactly the agents'
    prompt tokens plus their latent steps, and each row computes what it computes alone."""
    import latentbench.methods.latent_ops as latent_ops
    from latentbench.methods.agents import fresh_turns
    from latentbench.methods.latent_mas import agent_roles
    from latentbench.methods.latent_ops import agent_caches
    from latentbench.models.latent import realignment

    task, examples = gsm8k
    calls = _record(monkeypatch, latent_ops, "decode",
                    lambda lm, paths, *_: (paths.mask.clone(), paths.cache.get_seq_length(), paths.hidden.clone()))
    method = make_method("latent-mas", {"agents": 3, "latent_steps": 2, "max_new_tokens": 2, "batch_size": 3})
    list(method.run(lm, task, examples))
    mask, cache_length, hidden = calls[0][0]
    cfg = method.config
    turns = [fresh_turns(lm, task, ex, agent_roles(cfg), cfg.templates("number"), cfg.system_prompt) for ex in examples]
    expected = [sum(len(ids) for ids in t.ids[:-1]) + cfg.agents * cfg.latent_steps for t in turns]
    assert mask.sum(-1).tolist() == expected and len(set(expected)) == len(expected)  # ragged
    assert cache_length == mask.shape[1]
    ra = realignment(lm, cfg.realign_lambda)
    for row, turn in enumerate(turns):
        alone, _ = agent_caches(lm, [turn.ids[:-1]], cfg.latent_steps, ra)
        assert torch.allclose(hidden[row], alone.hidden[0], atol=1e-4)


def test_latentmas_without_latent_steps_gives_the_judger_no_cache(lm, gsm8k, monkeypatch) -> None:
    import latentbench.methods.latent_ops as latent_ops

    task, examples = gsm8k
    calls = _record(monkeypatch, latent_ops, "decode")
    outcomes = _run(lm, task, examples[:2], "latent-mas", latent_steps=0, max_new_tokens=2)
    assert calls[0][0][1] is None and all(o.latent_steps == 0 for o in outcomes)


def test_control_none_keeps_the_agents_turns_but_runs_no_latent_step(lm, gsm8k, monkeypatch) -> None:
    import latentbench.methods.latent_ops as latent_ops
    from latentbench.methods.agents import fresh_turns
    from latentbench.methods.latent_mas import agent_roles

    task, examples = gsm8k
    calls = _record(monkeypatch, latent_ops, "decode", lambda lm, paths, *_: paths.mask.sum(-1).tolist())
    method = make_method("latent-mas", {"agents": 2, "latent_steps": 3, "max_new_tokens": 2, "control": "none"})
    outcomes = list(method.run(lm, task, examples[:2]))
    cfg = method.config
    turns = [fresh_turns(lm, task, ex, agent_roles(cfg), cfg.templates("number"), cfg.system_prompt)
             for ex in examples[:2]]
    assert calls[0][0] == [sum(len(ids) for ids in t.ids[:-1]) for t in turns]  # turns, no latent position
    assert [(o.latent_steps, o.latent_budget) for o in outcomes] == [(0, 6), (0, 6)]


@pytest.mark.parametrize("protocol", ["latentmas", "compact"])
def test_control_noise_replaces_latents_by_random_vectors_of_the_same_norm(lm, gsm8k, monkeypatch,
                                                                           protocol: str) -> None:
    import latentbench.models.latent as latent

    task, examples = gsm8k
    seen: dict[str, list] = {}
    real = latent._forward

    def spy(lm_, cache, mask, *, input_ids=None, embeds=None):
        if embeds is not None:
            seen.setdefault(control, []).append(embeds[:, 0].clone())
        return real(lm_, cache, mask, input_ids=input_ids, embeds=embeds)

    monkeypatch.setattr(latent, "_forward", spy)
    for control in ("off", "noise"):
        _run(lm, task, examples[:2], "latent-mas", agents=2, latent_steps=2, max_new_tokens=1, protocol=protocol,
             control=control)
    target = latent.realignment(lm, 1e-3).target_norm
    off, noise = torch.stack(seen["off"]), torch.stack(seen["noise"])
    assert off.shape == noise.shape == (4, 2, lm.model.config.hidden_size)
    assert torch.allclose(noise.norm(dim=-1), torch.full(noise.shape[:2], target), rtol=1e-4)
    assert torch.allclose(off.norm(dim=-1), torch.full(off.shape[:2], target), rtol=1e-4)
    cosine = torch.nn.functional.cosine_similarity(off, noise, dim=-1)
    assert cosine.abs().max() < 0.5  # unrelated directions, not the model's latents


def test_compact_protocol_is_the_handoff_loop(lm, gsm8k) -> None:
    """protocol=compact is the question once, short handoffs and a solver turn, decoded greedily."""
    from latentbench.methods.agents import DEFAULT_ROLES, agent_prompts
    from latentbench.methods.generation import eos_token_ids
    from latentbench.models.latent import greedy_decode, latent_steps, pad_left, prefill, realignment

    task, examples = gsm8k
    outcomes = _run(lm, task, examples, "latent-mas", protocol="compact", agents=2, latent_steps=3,
                    max_new_tokens=5, batch_size=3)
    pad, ra = lm.tokenizer.pad_token_id, realignment(lm, 1e-3)
    prompts = [agent_prompts(lm, task, ex, 2, ("planner", "critic", "refiner"), DEFAULT_ROLES) for ex in examples]
    paths = prefill(lm, *pad_left([p.first for p in prompts], pad, lm.device))
    paths, _, _ = latent_steps(lm, paths, 3, ra)
    paths = prefill(lm, *pad_left([p.handoffs[0] for p in prompts], pad, lm.device), paths=paths)
    paths, _, _ = latent_steps(lm, paths, 3, ra)
    ids, mask = pad_left([p.solver for p in prompts], pad, lm.device)
    tokens, forwards = greedy_decode(lm, paths, ids, 5, eos_token_ids(lm), mask)
    assert [o.outputs[0] for o in outcomes] == lm.tokenizer.batch_decode(tokens, skip_special_tokens=True)
    assert [o.prompt for o in outcomes] == [p.first_text for p in prompts]
    assert {o.forward_passes for o in outcomes} == {1 + 3 + 1 + 3 + forwards}


@pytest.mark.parametrize("prompt", ["sequential", "hierarchical"])
def test_text_mas_hands_each_agents_text_on(lm, gsm8k, monkeypatch, prompt: str) -> None:
    import latentbench.methods.text_mas as text_mas

    task, examples = gsm8k
    calls = _record(monkeypatch, text_mas, "generate")
    examples = examples[:2]
    outcomes = _run(lm, task, examples, "text-mas", prompt=prompt, max_new_tokens=4, agent_max_new_tokens=3,
                    batch_size=2)
    names = ["Planner", "Critic", "Refiner"] if prompt == "sequential" else ["Math Agent", "Science Agent", "Code Agent"]
    assert len(calls) == 4  # three agents, then the judger
    for row, (ex, outcome) in enumerate(zip(examples, outcomes, strict=True)):
        prompts = [args[1][row] for args, _, _ in calls]
        blocks = [f"[{name}]:\n{gen.texts[row][0].strip()}\n" for name, (_, _, gen) in zip(names, calls, strict=False)]
        assert all(p.count(ex.question) == 1 for p in prompts)
        for agent in range(1, 4):  # sequential: everyone reads all earlier texts; hierarchical: the judger only
            sees = prompt == "sequential" or agent == 3
            assert all((block in prompts[agent]) == sees for block in blocks[:agent])
        assert outcome.prompt == prompts[3] and outcome.outputs == [calls[3][2].texts[row][0].strip()]
        assert outcome.generated_tokens == sum(gen.tokens[row] for _, _, gen in calls)
        assert outcome.metrics["judger_tokens"] == calls[3][2].tokens[row]


@pytest.mark.parametrize("method", ["latent-mas", "text-mas"])
def test_unknown_role_or_template_without_question_is_refused(method: str) -> None:
    with pytest.raises(UsageError, match="no prompt for role\\(s\\) judge "):
        make_method(method, {"pipeline": "planner,judge"})
    with pytest.raises(UsageError, match="judger: needs \\{question\\}"):
        make_method(method, {"roles": {"judger": "Answer it."}})


def test_identity_realignment_only_rescales(lm) -> None:
    from latentbench.methods.latent_ops import identity_realignment

    ra, h = identity_realignment(lm), torch.randn(3, lm.model.config.hidden_size)
    out = ra(h)
    assert torch.allclose(out.norm(dim=-1), torch.full((3,), ra.target_norm), rtol=1e-4)
    assert torch.allclose(torch.cosine_similarity(out, h, dim=-1), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("name", ["gsm8k", "gpqa"])
def test_the_reference_answer_format_is_read_strictly(name: str, data_dir: Path) -> None:
    task = get_task(name)
    ex = task.examples(limit=1, data_dir=data_dir)[0]
    score = task.score(ex, f"Step by step ... so the final answer is \\boxed{{{ex.gold}}}.")
    assert score.correct["strict"]
