"""Latent steps and the latent tree on tiny random models: shapes, values, batching, replay."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from latentbench.methods.latent_tree.config import LatentTreeConfig
from latentbench.methods.latent_tree.method import LatentTreeMethod
from latentbench.methods.latent_tree.tree import TreeNode, assign_values, node_noise
from latentbench.models import tiny_model
from latentbench.models.latent import latent_steps, pad_left, prefill, realignment
from latentbench.tasks import get_task


@pytest.fixture(scope="module")
def lm():
    return tiny_model("llama", seed=0)


@pytest.fixture(scope="module")
def gsm8k_examples():
    import os

    return get_task("gsm8k").examples(limit=3, data_dir=Path(os.environ["LATENTBENCH_DATA_DIR"]))


def test_realignment_solves_the_ridge_normal_equations(lm) -> None:
    lam = 1e-3
    ra = realignment(lm, lam)
    w_in = lm.model.get_input_embeddings().weight.detach().double()
    w_out = lm.model.get_output_embeddings().weight.detach().double()
    lhs = (w_out.T @ w_out + lam * torch.eye(w_out.shape[1], dtype=torch.float64)) @ ra.matrix.double()
    assert torch.allclose(lhs, w_out.T @ w_in, atol=1e-3)
    embeds = ra(torch.randn(5, w_in.shape[1]))
    assert torch.allclose(embeds.norm(dim=-1), torch.full((5,), ra.target_norm), rtol=1e-4)
    assert ra.target_norm == pytest.approx(float(w_in.norm(dim=-1).mean()), rel=1e-6)


def test_batched_sibling_expansion_equals_one_at_a_time(lm) -> None:
    ra = realignment(lm)
    ids = torch.tensor([[5, 17, 99, 1000, 42]])
    noise = torch.stack([node_noise(0, "q", i, 3, ra.matrix.shape[0], 0.5) for i in range(4)])  # [4, 3, d]
    batched, lat_b, hid_b = latent_steps(lm, prefill(lm, ids).repeat(4), 3, ra, lambda s: noise[:, s])
    for row in range(4):
        single, lat_s, hid_s = latent_steps(lm, prefill(lm, ids), 3, ra, lambda s, r=row: noise[r:r + 1, s])
        assert torch.allclose(lat_b[row], lat_s[0], atol=1e-5)
        assert torch.allclose(hid_b[row], hid_s[0], atol=1e-5)
        for layer_b, layer_s in zip(batched.cache.layers, single.cache.layers, strict=True):
            assert torch.allclose(layer_b.keys[row], layer_s.keys[0], atol=1e-5)
    assert not torch.allclose(hid_b[0], hid_b[1])  # the noise made siblings differ


def test_left_padding_matches_unpadded(lm) -> None:
    """Questions of different lengths share a batch: padded rows compute what they compute alone."""
    rows = [[5, 17, 99, 1000, 42, 7], [8, 9]]
    ra = realignment(lm)
    paths = prefill(lm, *pad_left(rows, 0, torch.device("cpu")))
    paths, _, hid = latent_steps(lm, paths, 2, ra)
    paths = prefill(lm, *pad_left([[11, 12], [13, 14, 15]], 0, torch.device("cpu")), paths=paths)
    for i, (row, handoff) in enumerate(zip(rows, [[11, 12], [13, 14, 15]], strict=True)):
        alone, _, hid_alone = latent_steps(lm, prefill(lm, torch.tensor([row])), 2, ra)
        alone = prefill(lm, torch.tensor([handoff]), paths=alone)
        assert torch.allclose(hid[i], hid_alone[0], atol=1e-5)
        assert torch.allclose(paths.hidden[i], alone.hidden[0], atol=1e-5)


def _node(node_id: int, parent: int | None, kept: bool | None = None, correct: bool | None = None) -> TreeNode:
    return TreeNode(node_id, parent, 0, 0, 0, "r", torch.zeros(0), torch.zeros(0), kept=kept, correct=correct)


def test_node_values_on_a_hand_made_tree() -> None:
    #        0
    #    1       2
    #  3   4   5   6      kept: 3 (right), 4 (wrong), 6 (right); 5 not decoded
    nodes = [_node(0, None), _node(1, 0), _node(2, 0), _node(3, 1, True, True), _node(4, 1, True, False),
             _node(5, 2, False), _node(6, 2, True, True)]
    assign_values(nodes)
    by = {n.node_id: n for n in nodes}
    assert (by[0].n_leaves, by[0].n_correct, by[0].value, by[0].label) == (3, 2, 2 / 3, True)
    assert (by[1].n_leaves, by[1].value, by[1].label) == (2, 0.5, True)
    assert (by[2].n_leaves, by[2].value) == (1, 1.0)
    assert (by[4].value, by[4].label) == (0.0, False)
    assert (by[5].n_leaves, by[5].value, by[5].label) == (0, None, None)


@pytest.mark.parametrize(("agents", "branches", "keep"), [(1, 2, 1), (2, 3, 4), (3, 2, 10)])
def test_tree_shape_and_counts(lm, gsm8k_examples, agents: int, branches: int, keep: int) -> None:
    config = LatentTreeConfig(agents=agents, branches=branches, latent_steps=2, keep=keep, max_new_tokens=3)
    outcome = next(LatentTreeMethod(config).run(lm, get_task("gsm8k"), gsm8k_examples[:1]))
    nodes: list[TreeNode] = outcome.artifacts["nodes"]
    assert len(nodes) == sum(branches ** d for d in range(agents + 1))
    for depth in range(agents + 1):
        assert sum(n.depth == depth for n in nodes) == branches ** depth
    leaves = [n for n in nodes if n.depth == agents]
    kept = [n for n in leaves if n.kept]
    assert len(kept) == min(keep, len(leaves))
    assert all(n.kept is None for n in nodes if n.depth < agents)
    assert nodes[0].n_leaves == len(kept) and outcome.artifacts["tree"]["n_leaves"] == len(kept)
    # a kept leaf holds the top consistency scores among leaves
    assert min(n.consistency for n in kept) >= max((n.consistency for n in leaves if not n.kept), default=-1)
    by = {n.node_id: n for n in nodes}
    for n in nodes[1:]:
        parent = by[n.parent_id]
        assert parent.depth == n.depth - 1 and n.latent.shape == (2, lm.model.config.hidden_size)
    assert outcome.latent_steps == 2 * sum(branches ** d for d in range(1, agents + 1))


def test_same_seed_same_tree_other_seed_differs(lm, gsm8k_examples) -> None:
    def leaves(seed: int) -> torch.Tensor:
        cfg = LatentTreeConfig(agents=2, branches=2, latent_steps=2, keep=1, max_new_tokens=2, seed=seed)
        nodes = next(LatentTreeMethod(cfg).run(lm, get_task("gsm8k"), gsm8k_examples[:1])).artifacts["nodes"]
        return torch.stack([n.hidden for n in nodes[1:]])

    assert torch.equal(leaves(0), leaves(0))
    assert not torch.allclose(leaves(0), leaves(1))


def test_gpqa_question_text_stays_out_of_the_tree(lm) -> None:
    """GPQA's authors ask that its questions never appear in plain text online (the card's publish_text)."""
    import os

    task = get_task("gpqa")
    example = task.examples(limit=1, data_dir=Path(os.environ["LATENTBENCH_DATA_DIR"]))[0]
    cfg = LatentTreeConfig(agents=1, branches=1, latent_steps=1, keep=1, max_new_tokens=1)
    tree = next(LatentTreeMethod(cfg).run(lm, task, [example])).artifacts["tree"]
    assert tree["question"] is None and not task.card.publish_text
    gsm = get_task("gsm8k")
    gsm_example = gsm.examples(limit=1, data_dir=Path(os.environ["LATENTBENCH_DATA_DIR"]))[0]
    assert next(LatentTreeMethod(cfg).run(lm, gsm, [gsm_example])).artifacts["tree"]["question"] == gsm_example.question


def test_cache_forwards_raise_no_deprecation_warning(lm) -> None:
    """transformers renamed ``past_key_values`` to ``cache``; we pass whichever the installed version takes."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids, mask = pad_left([[5, 6, 7], [8, 9]], 0, lm.device)
        paths = prefill(lm, ids, mask)
        latent_steps(lm, paths, 2, realignment(lm))
    assert not [w for w in caught if "past_key_values" in str(w.message) or "deprecated" in str(w.message).lower()]


def _grow(lm, example, **kw):
    cfg = LatentTreeConfig(**{"agents": 2, "branches": 2, "latent_steps": 2, "keep": 2, "max_new_tokens": 3, **kw})
    method = LatentTreeMethod(cfg)
    return method.grow(lm, get_task("gsm8k"), example, realignment(lm)), cfg


def test_latentmas_tree_gives_every_agent_and_the_judger_the_question(lm, gsm8k_examples) -> None:
    from latentbench.methods.agents import token_ids

    example = gsm8k_examples[0]
    outcome, cfg = _grow(lm, example)
    nodes = outcome.artifacts["nodes"]
    judger = outcome.artifacts["tree"]["solver_prompt"]
    question = example.question.strip().splitlines()[0]
    assert question in outcome.prompt and question in judger and "boxed" in judger
    turn = len(token_ids(lm, outcome.prompt))
    assert nodes[0].kv.shape[3] == turn  # the root holds agent 0's fresh turn
    for node in nodes[1:]:
        next_turn = node.kv.shape[3] - cfg.latent_steps  # latents, then (inner nodes) the next agent's turn
        assert next_turn > 20 if node.depth < cfg.agents else next_turn == 0


def test_consistency_comes_from_the_node_own_last_latent_state(lm, gsm8k_examples) -> None:
    outcome, _ = _grow(lm, gsm8k_examples[0], protocol="compact")
    for node in outcome.artifacts["nodes"][1:]:
        assert torch.equal(node.last_hidden, node.hidden[-1])  # not the state after the next turn


def test_keep_all_decodes_every_leaf_and_values_carry_their_leaf_count(lm, gsm8k_examples) -> None:
    outcome, _ = _grow(lm, gsm8k_examples[0], keep="all")
    nodes = outcome.artifacts["nodes"]
    leaves = [n for n in nodes if n.depth == 2]
    assert all(n.kept for n in leaves) and outcome.artifacts["tree"]["top_k"] == 4
    assert nodes[0].n_leaves == 4 and [n.n_leaves for n in nodes if n.depth == 1] == [2, 2]


def test_leaf_stats_count_mixed_trees_and_distinct_answers() -> None:
    import polars as pl

    from latentbench.methods.latent_tree.record import leaf_stats

    # tree a: leaves right, wrong, (no answer) -> mixed, 3 distinct; tree b: both right, same answer;
    # inner nodes (kept null) and an undecoded leaf (kept False) do not count
    nodes = pl.DataFrame({
        "example_id": ["a", "a", "a", "a", "a", "b", "b", "b"],
        "kept": [None, True, True, True, False, None, True, True],
        "correct": [None, True, False, False, None, None, True, True],
        "prediction": [None, "4", "5", None, "9", None, "7", "7"],
    })
    trees = pl.DataFrame({"example_id": ["a", "b"], "correct": [False, True]})
    stats = leaf_stats(trees, nodes)
    assert (stats["decoded_leaves"], stats["correct_leaves"]) == (5, 3)
    assert stats["share_correct"] == pytest.approx(3 / 5)
    assert stats["mixed_trees"] == pytest.approx(1 / 2)
    assert stats["distinct_answers"] == pytest.approx((3 + 1) / 2)
    assert stats["majority_accuracy"] == pytest.approx(1 / 2)


def test_trees_decoded_in_one_batch_equal_trees_decoded_alone(lm, gsm8k_examples) -> None:
    """batch_size > 1 left pads the trees' leaf caches (ragged questions) into one decoding batch."""
    def texts(batch_size: int) -> tuple[list[list[str | None]], list[int]]:
        cfg = LatentTreeConfig(agents=1, branches=2, latent_steps=2, keep="all", max_new_tokens=5,
                               batch_size=batch_size)
        outcomes = list(LatentTreeMethod(cfg).run(lm, get_task("gsm8k"), gsm8k_examples))
        return [[n.text for n in o.artifacts["nodes"] if n.kept] for o in outcomes], [o.forward_passes for o in outcomes]

    alone, alone_forwards = texts(1)
    together, together_forwards = texts(3)
    assert together == alone and all(t for tree in alone for t in tree)
    grow = 1 + 2  # root prefill + latent steps
    assert min(alone_forwards) > grow and sum(together_forwards) < sum(alone_forwards)
    assert together_forwards[1:] == [grow, grow] and together_forwards[0] > grow
