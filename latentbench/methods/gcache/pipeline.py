"""One batch of questions through ``gcache``, as the method and its trainer both run it: propose each
question's graph, run its agents (``agents.py``), fuse what they hand on, decode the decision node."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from latentbench.methods.gcache.agents import QuestionRun, fused_paths, run_agents
from latentbench.methods.gcache.graph import AgentGraph, make_graph, node_count
from latentbench.methods.gcache.model import GCacheModel, embed_texts
from latentbench.methods.gcache.roles import ROLE_PROMPTS, prior_adjacency, role_names, role_turn
from latentbench.methods.generation import chat_text
from latentbench.methods.prompts import fill, latent_roles, question_text

if TYPE_CHECKING:
    from latentbench.methods.gcache.config import GraphRunConfig
    from latentbench.models import LoadedModel
    from latentbench.models.latent import Paths, Realignment
    from latentbench.tasks import Example, Task


@dataclass
class GraphSetup:
    """What every question of a task shares: the nodes' roles, the prior adjacency, role embeddings."""

    roles: list[str]
    edge_index: torch.Tensor  # [2, E] prior role adjacency (both directions)
    role_embeddings: torch.Tensor  # [nodes, hidden]
    realign: Realignment


def graph_setup(lm: LoadedModel, cfg: GraphRunConfig, task: Task) -> GraphSetup:
    from latentbench.methods.latent_ops import controlled, identity_realignment
    from latentbench.models.latent import realignment

    kind = task.card.answer_kind
    roles = role_names(node_count(cfg.graph, cfg.agents), kind, cfg.roles)
    if cfg.graph == "Debate":  # the second round repeats the first round's roles
        roles = role_names(cfg.agents, kind, cfg.roles) * 2
    pairs = prior_adjacency(roles, kind)
    edge_index = torch.tensor(pairs, dtype=torch.long).T if pairs else torch.zeros(2, 0, dtype=torch.long)
    realign = realignment(lm, cfg.realign_lambda) if cfg.realign else identity_realignment(lm)
    return GraphSetup(roles, edge_index, embed_texts(lm, [ROLE_PROMPTS.get(r, r) for r in roles]),
                      controlled(realign, cfg.control))


def propose(module: GCacheModel, setup: GraphSetup, cfg: GraphRunConfig, question_embeddings: torch.Tensor | None,
            count: int, *, threshold: bool = False, generator: torch.Generator | None = None) -> list[AgentGraph]:
    """One graph per question: sampled from the policy (learned, with grad when the module trains), or fixed."""
    n = len(setup.roles)
    if cfg.graph != "learned":
        return [make_graph(cfg.graph, n, generator=generator) for _ in range(count)]
    assert question_embeddings is not None
    device = next(module.parameters()).device
    graphs = []
    for q in range(count):
        features = torch.cat([setup.role_embeddings, question_embeddings[q].expand(n, -1)], dim=-1).to(device)
        probs = module.policy(features, setup.edge_index.to(device), cfg.edge_temperature)
        graphs.append(make_graph("learned", n, probs.cpu(), threshold=threshold, generator=generator))
    return graphs


@dataclass
class BatchRun:
    runs: list[QuestionRun]
    decision_prompts: list[str]
    decision_ids: list[list[int]]
    tokens: list[list[int]]  # the decision node's answer tokens per question (EOS excluded)
    forwards: int


def decision_prompt(lm: LoadedModel, task: Task, ex: Example, system: str) -> str:
    """The decision node's turn: the reference LatentMAS judger's prompt for the task's answer kind."""
    template = latent_roles("sequential", task.card.answer_kind)["judger"]
    return chat_text(lm, fill(template, question=question_text(task, ex)), system or None)


def run_batch(lm: LoadedModel, module: GCacheModel, setup: GraphSetup, cfg: GraphRunConfig, task: Task,
              examples: list[Example], max_new_tokens: int, *, threshold: bool = False,
              generator: torch.Generator | None = None,
              note: Callable[[Paths], tuple[list[list[int]], int]] | None = None) -> BatchRun:
    from latentbench.methods.agents import token_ids
    from latentbench.methods.latent_ops import decode
    from latentbench.models.latent import pad_left

    questions = [question_text(task, ex) for ex in examples]
    embeddings = embed_texts(lm, questions) if cfg.graph == "learned" else None
    graphs = propose(module, setup, cfg, embeddings, len(examples), threshold=threshold, generator=generator)
    system = cfg.system_prompt or None
    turns = [[chat_text(lm, role_turn(role, q), system) for role in setup.roles] for q in questions]
    turn_ids = [[token_ids(lm, t) for t in row] for row in turns]
    runs, forwards = run_agents(lm, graphs, [setup.roles] * len(examples), turns, turn_ids, cfg.steps_run,
                                setup.realign, module.fuser, latent_only=cfg.latent_only, note=note)
    prompts = [decision_prompt(lm, task, ex, cfg.system_prompt) for ex in examples]
    ids = [token_ids(lm, p) for p in prompts]
    with torch.inference_mode():
        context = fused_paths(lm, module.fuser, [run.decision_blocks() for run in runs])
    tokens, decoded = decode(lm, context, *pad_left(ids, lm.tokenizer.pad_token_id, lm.device), max_new_tokens,
                             cfg.answer_temperature, cfg.top_p)
    return BatchRun(runs, prompts, ids, tokens, forwards + 1 + decoded)


def answer_log_prob(lm: LoadedModel, module: GCacheModel, run: QuestionRun, prompt_ids: list[int],
                    answer: list[int]) -> torch.Tensor:
    """Mean log-probability of ``answer`` after the decision prompt, read on the fused cache with grad
    through the fuser (the LM stays frozen; what the agents handed on is taken as given)."""
    from latentbench.methods.gcache.agents import cache_of
    from latentbench.models.latent import run_body

    blocks = run.decision_blocks()
    if not answer or not blocks:
        return sum(p.sum() for p in module.fuser.parameters()) * 0.0
    with torch.inference_mode(False):
        blocks = [type(b)(b.origin, b.kind, b.keys.clone(), b.values.clone(), b.descriptor.clone()) for b in blocks]
        keys, values = module.fuser(blocks)
        dtype, device = lm.model.dtype, lm.device
        cache = cache_of(keys.to(device, dtype), values.to(device, dtype))
        ids = torch.tensor([[*prompt_ids, *answer]], device=device)
        mask = torch.ones(1, keys.shape[2] + ids.shape[1], dtype=torch.long, device=device)
        hidden = run_body(lm.model.base_model, mask, cache=cache, input_ids=ids).last_hidden_state
        logits = lm.model.get_output_embeddings()(hidden[0, len(prompt_ids) - 1:-1]).float()  # predicts answer
        target = torch.tensor(answer, device=device)
        return torch.log_softmax(logits, -1).gather(-1, target[:, None]).mean()
