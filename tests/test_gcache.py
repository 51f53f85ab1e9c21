"""gcache: DAG sampling and its log-probability, the GCN policy under REINFORCE, the cache fuser, agents
reading exactly their predecessors, the API modes against a loopback endpoint, conformance suites."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from latentbench.errors import UsageError
from latentbench.methods.base import make_method
from latentbench.methods.gcache.config import GRAPHS
from latentbench.methods.gcache.fuser import Block, CacheFuser
from latentbench.methods.gcache.graph import (
    GraphPolicy,
    candidate_mask,
    fixed_edges,
    log_prob_of,
    make_graph,
    node_count,
    reaches,
    sample_dag,
)
from latentbench.methods.gcache.train import GCacheTrainer
from latentbench.methods.testing import MethodTests
from latentbench.models import tiny_model
from latentbench.tasks import get_task
from latentbench.train.testing import TrainerTests
from tests.conftest import saved_tiny_model
from tests.openai_server import ChatServer


# -- graphs ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("graph", GRAPHS)
def test_every_graph_is_a_dag_within_its_mask(graph: str) -> None:
    for agents in (1, 2, 4, 5):
        n = node_count(graph, agents)
        for seed in range(15):
            probs = torch.rand(n, n, generator=torch.Generator().manual_seed(100 + seed))
            g = make_graph(graph, n, probs, generator=torch.Generator().manual_seed(seed))
            assert len(g.order()) == n and sorted(g.order()) == list(range(n))
            assert all(not reaches(g.edges, j, i) for i, j in g.edges)  # no edge closes a cycle
            assert all(i != j for i, j in g.edges) and len(set(g.edges)) == len(g.edges)
            if graph not in ("learned", "Random"):
                assert g.edges == fixed_edges(graph, n)
            position = {node: k for k, node in enumerate(g.order())}
            assert all(position[i] < position[j] for i, j in g.edges)


def test_fixed_topologies() -> None:
    assert fixed_edges("Chain", 4) == [(0, 1), (1, 2), (2, 3)]
    assert fixed_edges("Star", 4) == [(0, 1), (0, 2), (0, 3)]
    assert fixed_edges("FullConnected", 3) == [(0, 1), (0, 2), (1, 2)]
    assert fixed_edges("Layered", 4) == [(0, 2), (0, 3), (1, 2), (1, 3)]
    assert fixed_edges("Debate", 4) == [(0, 2), (0, 3), (1, 2), (1, 3)]  # 2 agents, two rounds
    assert fixed_edges("DirectAnswer", 1) == [] and node_count("DirectAnswer", 4) == 1


def test_roles_cycle_per_domain_and_the_prior_links_them() -> None:
    from latentbench.methods.gcache.roles import prior_adjacency, role_names

    assert role_names(5, "number") == ["math solver", "mathematical analyst", "programming expert", "inspector",
                                       "math solver"]
    assert role_names(2, "code")[0] == "project manager" and role_names(1, "choice") == ["domain expert"]
    assert role_names(3, "number", "a, b") == ["a", "b", "a"]
    pairs = prior_adjacency(role_names(5, "number"), "number")
    assert (0, 1) in pairs and (1, 0) in pairs and (0, 4) in pairs  # linked roles, and one role twice
    assert (0, 2) not in pairs  # the solver and the programmer are not linked in the prior


def test_log_prob_sums_over_taken_and_untaken_allowed_edges() -> None:
    n = 4
    probs = torch.rand(n, n, generator=torch.Generator().manual_seed(3)) * 0.9 + 0.05
    mask = candidate_mask(n)
    for seed in range(10):
        g = sample_dag(probs, mask, generator=torch.Generator().manual_seed(seed))
        # the allowed candidates: every ordered pair the walk did not skip for closing a cycle
        expected, walked = 0.0, []
        for i in range(n):
            for j in range(n):
                if i != j and not reaches(walked, j, i):
                    p = float(probs[i, j])
                    taken = (i, j) in g.edges
                    expected += math.log(p) if taken else math.log(1 - p)
                    walked += [(i, j)] if taken else []
                    assert g.probs[(i, j)] == pytest.approx(p)
        assert float(g.log_prob) == pytest.approx(expected, rel=1e-5)
        assert set(g.probs) >= set(g.edges)
        assert float(log_prob_of(probs, mask, g.edges)) == pytest.approx(expected, rel=1e-5)


def test_threshold_keeps_exactly_the_likely_acyclic_edges() -> None:
    probs = torch.tensor([[0.0, 0.9, 0.2], [0.8, 0.0, 0.7], [0.6, 0.4, 0.0]])
    g = sample_dag(probs, candidate_mask(3), threshold=True)
    # 0->1 taken; 1->0 would close a cycle; 1->2 taken; 2->0 and 2->1 would close cycles
    assert g.edges == [(0, 1), (1, 2)]
    assert set(g.probs) == {(0, 1), (0, 2), (1, 2)}


@pytest.mark.parametrize(("reward", "direction"), [(1.0, 1), (0.0, -1)])
def test_reinforce_step_moves_the_graph_with_its_advantage(reward: float, direction: int) -> None:
    """Reward 1 against a baseline of 0.5 makes the sampled graph likelier; reward 0 makes it rarer."""
    from latentbench.train.advantages import reinforce_advantages

    torch.manual_seed(0)
    n, dim = 4, 12
    policy = GraphPolicy(dim, 8, 6)
    features, prior = torch.randn(n, dim), torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
    mask = candidate_mask(n)
    optimizer = torch.optim.Adam(policy.parameters(), lr=0.01)
    graph = sample_dag(policy(features, prior), mask, generator=torch.Generator().manual_seed(1))
    before = float(graph.log_prob.detach())
    advantage, baseline = reinforce_advantages(torch.tensor([reward]), baseline=0.5)
    assert float(advantage) == reward - 0.5 and baseline == pytest.approx(0.9 * 0.5 + 0.1 * reward)
    (-(advantage[0] * graph.log_prob)).backward()
    optimizer.step()
    with torch.no_grad():
        after = float(log_prob_of(policy(features, prior), mask, graph.edges))
    assert (after - before) * direction > 0


def test_edge_probabilities_follow_the_normalised_logits() -> None:
    torch.manual_seed(1)
    policy = GraphPolicy(10, 8, 4)
    features, prior = torch.randn(5, 10), torch.zeros(2, 0, dtype=torch.long)
    logits = policy.logits(features, prior).detach()
    off = ~torch.eye(5, dtype=torch.bool)
    assert float(logits[off].min()) == pytest.approx(-1) and float(logits[off].max()) == pytest.approx(1)
    assert torch.allclose(logits, logits.T, atol=1e-6)  # Z·Zᵀ is symmetric
    assert torch.allclose(policy(features, prior, temperature=0.5), torch.sigmoid(logits / 0.5))


# -- fuser -----------------------------------------------------------------------------------------------
def _block(origin: int, kind: str, length: int, seed: int, layers: int = 3) -> Block:
    g = torch.Generator().manual_seed(seed)
    return Block(origin, kind, torch.randn(layers, 2, length, 4, generator=g), torch.randn(layers, 2, length, 4, generator=g),
                 torch.randn(16, generator=g))


def test_fuser_keeps_every_predecessor_position() -> None:
    blocks = [_block(0, "turn", 5, 0), _block(0, "latent", 2, 1), _block(1, "turn", 9, 2), _block(2, "latent", 1, 3)]
    fuser = CacheFuser(layers=3, hidden=16)
    keys, values = fuser(blocks)
    assert keys.shape == (3, 2, 17, 4) and values.shape == (3, 2, 17, 4)
    assert torch.equal(keys, torch.cat([b.keys for b in blocks], dim=2))  # keys are never reweighted
    assert torch.allclose(values, torch.cat([b.values for b in blocks], dim=2))  # untrained: plain concatenation
    with torch.no_grad():
        fuser.gate_logits[1] = 2.0
        fuser.scorer.copy_(torch.randn(16))
    keys2, values2 = fuser(blocks)
    weights = fuser.origin_weights(blocks)
    assert float(sum(weights.values()).detach()) == pytest.approx(3.0)  # weights average 1 over the 3 origins
    gate = 2 * torch.sigmoid(torch.tensor(2.0))
    assert torch.allclose(values2[1, :, 7:16], blocks[2].values[1] * weights[1] * gate, atol=1e-6)
    assert torch.equal(keys2, keys)


# -- the method on a tiny model --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lm() -> Any:
    return tiny_model("qwen2", seed=0)


@pytest.fixture(scope="module")
def gsm8k(data_dir: Path) -> tuple[Any, list[Any]]:
    task = get_task("gsm8k")
    return task, task.examples(limit=3, data_dir=data_dir)


def _run(lm: Any, task: Any, examples: list, **config: Any) -> list:
    torch.manual_seed(0)
    base = {"max_new_tokens": 3, "latent_steps": 2, "agents": 3}
    return list(make_method("gcache", {**base, **config}, seed=0).run(lm, task, examples))


@pytest.mark.parametrize("graph", ["Chain", "FullConnected", "learned", "Debate"])
def test_agents_read_exactly_their_predecessors(lm: Any, gsm8k: tuple, graph: str) -> None:
    task, examples = gsm8k
    for outcome in _run(lm, task, examples, graph=graph, batch_size=2):
        run = outcome.artifacts["run"]
        for agent in run.agents:
            preds = run.graph.predecessors(agent.node)
            assert agent.context_positions == sum(run.agents[p].handed_positions for p in preds)
            assert all(b.origin == agent.node for b in run.handed[agent.node])
            turn = len(lm.tokenizer(agent.prompt, add_special_tokens=False)["input_ids"])
            assert agent.handed_positions == turn + 2  # its turn and its 2 latent positions
        assert outcome.metrics["decision_cache_positions"] == sum(a.handed_positions for a in run.agents)
        assert outcome.metrics["edges"] == len(run.graph.edges)


def test_graph_trace_holds_each_questions_graph_agents_and_kv(lm: Any, gsm8k: tuple, tmp_path: Path) -> None:
    from latentbench.store import DatasetWriter, open_dataset
    from latentbench.store.synthetic import INFO

    task, examples = gsm8k
    method = make_method("gcache", {"max_new_tokens": 3, "latent_steps": 2, "agents": 3, "save_kv": True}, seed=0)
    torch.manual_seed(0)
    outcomes = list(method.run(lm, task, examples[:2]))
    writer = DatasetWriter(tmp_path / "g", kind="graph-trace", info=INFO)
    for o in outcomes:
        with writer.example(o.example.id) as ex:
            method.write(ex, o, "graph-trace")
    writer.finalize()
    ds = open_dataset(tmp_path / "g")
    agents, edges, questions = ds.table("agents"), ds.table("edges"), ds.table("questions")
    for o in outcomes:
        run = o.artifacts["run"]
        mine = edges.filter(edges["example_id"] == o.example.id)
        assert sorted(zip(mine["src"], mine["dst"], strict=True)) == sorted(run.graph.probs)
        assert {(s, d) for s, d, t in zip(mine["src"], mine["dst"], mine["taken"], strict=True) if t} == set(run.graph.edges)
        q = questions.filter(questions["example_id"] == o.example.id).row(0, named=True)
        assert q["n_edges"] == len(run.graph.edges) and q["log_prob"] == pytest.approx(float(run.graph.log_prob))
        assert q["cache_positions_passed"] == o.metrics["cache_positions_passed"] and q["cache_transport"] == "kv"
        for row in agents.filter(agents["example_id"] == o.example.id).iter_rows(named=True):
            agent = run.agents[row["node"]]
            assert row["predecessors"] == run.graph.predecessors(row["node"])
            assert row["context_shape"] == [2, 2, agent.context_positions, 16]  # tiny: 2 layers, 2 kv heads, dim 16
            kv = ds.array("agent_kv", row["kv_ref"], torch=True)
            assert kv.shape == (2, 2, 2, agent.handed_positions, 16)
            own = run.handed[row["node"]]
            assert torch.equal(kv[1], torch.cat([b.values for b in own], dim=2).half())


def test_latent_only_hands_on_latent_positions(lm: Any, gsm8k: tuple) -> None:
    task, examples = gsm8k
    for outcome in _run(lm, task, examples[:2], graph="Chain", latent_only=True):
        run = outcome.artifacts["run"]
        assert [a.handed_positions for a in run.agents] == [2, 2, 2]
        assert [a.context_positions for a in run.agents] == [0, 2, 2]
        assert outcome.metrics["decision_cache_positions"] == 6


def test_chain_and_full_graph_differ_in_what_agents_read(lm: Any, gsm8k: tuple) -> None:
    task, examples = gsm8k
    chain = _run(lm, task, examples[:1], graph="Chain")[0].artifacts["run"]
    full = _run(lm, task, examples[:1], graph="FullConnected")[0].artifacts["run"]
    assert chain.agents[2].context_positions < full.agents[2].context_positions


def test_a_question_runs_the_same_in_a_batch_as_alone(lm: Any, gsm8k: tuple) -> None:
    task, examples = gsm8k
    fixed = _run(lm, task, examples, graph="Star", batch_size=3, max_new_tokens=6)
    for ex, batched in zip(examples, fixed, strict=True):
        alone = _run(lm, task, [ex], graph="Star", batch_size=1, max_new_tokens=6)[0]
        assert alone.outputs == batched.outputs
        assert [a.context_positions for a in alone.artifacts["run"].agents] == \
               [a.context_positions for a in batched.artifacts["run"].agents]


def test_api_mode_sends_the_agents_notes_to_the_endpoint(lm: Any, gsm8k: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    task, examples = gsm8k
    monkeypatch.setenv("GCACHE_TEST_KEY", "sk-test")
    with ChatServer() as server:
        outcomes = _run(lm, task, examples[:2], graph="Chain", mode="api", api_base=server.base_url,
                        api_model="test-model", api_key_env="GCACHE_TEST_KEY", agent_tokens=3)
    assert len(server.requests) == 2 and all(r["model"] == "test-model" for r in server.requests)
    assert all(h.get("authorization") == "Bearer sk-test" for h in server.headers)
    for outcome, request in zip(outcomes, server.requests, strict=True):
        assert outcome.outputs == ["The answer is \\boxed{42}."]
        sent = request["messages"][-1]["content"]
        assert outcome.example.question in sent
        for agent in outcome.artifacts["run"].agents:
            assert agent.text is not None and f"[{agent.role}]\n{agent.text.strip()}" in sent
        assert outcome.agent_prompts[-1]["prompt"] == sent
        notes = [a.note_tokens for a in outcome.artifacts["run"].agents]
        assert all(0 < n <= 3 for n in notes) and outcome.generated_tokens == sum(notes)  # no local answer decoded
        assert outcome.artifacts["local_text"] == ""
    assert [float(o.metrics["edges"]) for o in outcomes] == [2.0, 2.0]


def test_hybrid_mode_asks_the_endpoint_to_refine_the_local_answer(lm: Any, gsm8k: tuple, tmp_path: Path) -> None:
    task, examples = gsm8k
    with ChatServer(reply=f"Checked. The answer is \\boxed{{{examples[0].gold}}}.") as server:
        outcome = _run(lm, task, examples[:1], graph="Chain", mode="hybrid", api_base=server.base_url,
                       api_model="m")[0]
    local = outcome.artifacts["local_text"]
    assert local.strip() in server.requests[0]["messages"][-1]["content"]
    assert task.score(outcome.example, outcome.outputs[0]).correct[task.primary_variant]


def test_api_mode_refuses_a_dead_endpoint_in_one_line(lm: Any, gsm8k: tuple) -> None:
    task, examples = gsm8k
    with pytest.raises(UsageError, match=r"--api-base http://127.0.0.1:9/v1: the endpoint failed"):
        _run(lm, task, examples[:1], graph="DirectAnswer", mode="api", api_base="http://127.0.0.1:9/v1", api_model="m")


def test_api_mode_needs_an_endpoint() -> None:
    with pytest.raises(UsageError, match="api_base: mode=api needs it"):
        make_method("gcache", {"mode": "api"})


class TestGCacheMethod(MethodTests):
    method = "gcache"
    arch = "qwen2"
    config = {"max_new_tokens": 4, "latent_steps": 2, "agents": 3, "batch_size": 2, "save_kv": True}


class TestGCacheFixedGraph(MethodTests):
    method = "gcache"
    config = {"graph": "Layered", "max_new_tokens": 3, "latent_steps": 1, "agents": 4, "latent_only": True}


class TestGCacheCodeTask(MethodTests):
    """Code tasks: the code role set, the judger's code prompt, answers scored in the sandbox."""

    method = "gcache"
    task = "humaneval"
    n_examples = 2
    config = {"graph": "Star", "max_new_tokens": 3, "latent_steps": 1, "agents": 5}


# -- training --------------------------------------------------------------------------------------------
class HandRewardedTrainer(GCacheTrainer):
    """A tiny model never answers right: a hand-made reward instead (by question id, so batches are mixed)."""

    def correct(self, example: Any, text: str) -> float:
        return float(sum(map(ord, example.id)) % 2)


class TestGCacheTrainer(TrainerTests):
    trainer_class = HandRewardedTrainer
    base_config = {"max_steps": 4, "save_every": 2, "eval_every": 2, "batch_size": 4, "val_fraction": 0.3}
    state_buffers = ("baseline",)

    @property
    def config_overrides(self) -> dict[str, Any]:  # type: ignore[override]
        return {"model": str(saved_tiny_model("qwen2")), "agents": 3, "latent_steps": 1, "max_new_tokens": 3,
                "limit": 8, "learning_rate": 0.05, "gcn_hidden": 8, "embed_dim": 4}

    def make_datasets(self, tmp_path: Path) -> list[Path]:
        return []  # items come from --task's training questions

    def expected_source_hashes(self, datasets: list[Path]) -> set[str]:
        from latentbench.paths import data_dir

        hashes = {f["sha256"] for f in get_task("gsm8k").data_files("train", data_dir())}
        assert all(hashes)
        return hashes

    def test_trains_on_the_train_split_only(self, data_dir: Path) -> None:
        trainer = self.make_trainer()
        data = trainer.train_data([])
        assert data.split == "train"
        train_ids = {ex.id for ex in get_task("gsm8k").examples("train", data_dir=data_dir)}
        assert set(data.question_ids("train")) | set(data.question_ids("val")) <= train_ids

    def test_optimizer_holds_every_gcn_mlp_and_fuser_parameter(self) -> None:
        from latentbench.train.loop import open_train_data

        trainer = self.make_trainer()
        module = trainer.build(open_train_data(trainer, []))
        names = {n for n, p in module.named_parameters() if p.requires_grad}
        assert any(n.startswith("policy.conv1") for n in names) and any(n.startswith("policy.conv2") for n in names)
        assert any(n.startswith("policy.mlp") for n in names)
        assert {"fuser.gate_logits", "fuser.scorer"} <= names
        assert not any(p.requires_grad for p in trainer._lm.model.parameters())  # the LM stays frozen

    def test_the_method_runs_the_trained_policy_and_fuser(self, trained: Path, gsm8k: tuple) -> None:
        from latentbench.models import load_model
        from latentbench.train.testing import saved_tensors

        lm = load_model(str(saved_tiny_model("qwen2")))
        method = make_method("gcache", {"checkpoint": str(trained), "agents": 3, "latent_steps": 1,
                                        "max_new_tokens": 3})  # default widths: the checkpoint's are used
        state = method.module(lm).state_dict()
        saved = saved_tensors(trained)
        assert saved.keys() == state.keys() and all(torch.equal(state[k], saved[k]) for k in saved)
        assert float(saved["fuser.gate_logits"].abs().sum()) > 0  # trained: not the identity fuser any more
        task, examples = gsm8k
        assert len(list(method.run(lm, task, examples[:1]))) == 1
        other = load_model(str(saved_tiny_model("qwen2", seed=1)))
        with pytest.raises(UsageError, match="checkpoint"):
            method.module(other)  # trained on another model's states

    def test_refuses_datasets_and_fixed_graphs(self) -> None:
        with pytest.raises(UsageError, match="takes no datasets"):
            self.make_trainer().train_data(["data/x"])
        with pytest.raises(UsageError, match="graph=learned"):
            self.make_trainer(graph="Chain")


def test_mbppplus_trains_on_mbpps_train_part_never_on_scored_problems(data_dir: Path) -> None:
    from latentbench.methods.gcache.train import GCacheTrainConfig, training_split

    task = get_task("mbppplus")
    assert training_split(task, "auto") == ("train", None)
    trainer = GCacheTrainer(GCacheTrainConfig(task="mbppplus", val_fraction=0.0))
    ids = trainer.train_data([]).question_ids("train")
    scored = {e.id.split("/")[-1] for e in task.examples("test", data_dir=data_dir)}
    assert len(ids) == 263 and not {q.split("/")[-1] for q in ids} & scored


def test_held_apart_split_for_a_task_without_train_data(data_dir: Path) -> None:
    from latentbench.methods.gcache.train import GCacheTrainConfig, training_split
    from latentbench.train.data import question_hash

    task = get_task("humaneval")
    assert training_split(task, "auto") == ("test", 1.0)
    trainer = GCacheTrainer(GCacheTrainConfig(task="humaneval", dev_fraction=0.2, val_fraction=0.0))
    ids = trainer.train_data([]).question_ids("train")
    assert ids and all(question_hash("dev:" + q) < 0.2 for q in ids)
    assert 0.1 < len(ids) / len(task.examples("test", data_dir=data_dir)) < 0.3


def test_a_held_apart_checkpoint_names_its_training_questions_for_eval_to_leave_out(
        tmp_path: Path, data_dir: Path) -> None:
    import json

    from latentbench.train.data import question_hash

    task = get_task("humaneval")
    examples = task.examples(limit=20, data_dir=data_dir)
    (tmp_path / "config.json").write_text(json.dumps(
        {"trainer": "gcache", "config": {"task": "humaneval", "split": "auto", "dev_fraction": 0.2}}))
    method = make_method("gcache", {"checkpoint": str(tmp_path)})
    seen, reason = method.trained_on(task, examples)
    assert seen == {ex.id for ex in examples if question_hash("dev:" + ex.id) < 0.2} and seen
    assert f"checkpoint {tmp_path} was trained on them" in reason
    assert method.trained_on(get_task("gsm8k"), get_task("gsm8k").examples(limit=5, data_dir=data_dir))[0] == set()
