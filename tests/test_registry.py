"""The method is the unit of extension: a method defined here alone (registry entry + config + class)
runs through `eval`, `generate` and `methods` on the real CLI; config errors name the flag typed."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import saved_tiny_model

from latentbench import methods as registry
from latentbench.cli import main
from latentbench.config import ConfigError, option
from latentbench.methods.base import Outcome


@dataclass
class EchoConfig:
    repeat: int = option(1, "How many times the gold answer is echoed.")
    shout: bool = option(False, "Upper-case the answer.")
    note: str | None = option(None, "Free text, recorded in the config.")
    weights: dict[str, float] = option(help="Arbitrary weights.", factory=dict)

    def __post_init__(self) -> None:
        if self.repeat < 1:
            raise ConfigError("repeat", "must be >= 1")


class EchoMethod:
    """Echoes the gold answer: a throwaway method to prove the registry seam."""

    name = "echo"
    config_class = EchoConfig
    dataset_kinds = {"kv-shard": ()}

    def __init__(self, config: EchoConfig) -> None:
        self.config = config

    def run(self, lm, task, examples) -> Iterator[Outcome]:
        for ex in examples:
            text = " ".join([task.gold_output(ex)] * self.config.repeat)
            yield Outcome(ex, task.prompt(ex), [text.upper() if self.config.shout else text], generated_tokens=3,
                          forward_passes=1, metrics={"echo_repeat": float(self.config.repeat), "tag": 1.0},
                          artifacts={"kv": [[float(len(text))]]})

    def write(self, ex, outcome: Outcome, kind: str) -> None:
        import torch

        kv = torch.full((2, 1, 1, self.config.repeat, 2), float(len(outcome.outputs[0])))
        ex.add_array("kv", kv, owner="echo")

    @staticmethod
    def summarize(dataset) -> str:
        return f"echo dataset with {dataset.manifest['counts']['examples']} examples"


def cli(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """Run ``latentbench ARGS`` in-process through ``main`` (the console script's entry point)."""
    monkeypatch.setattr(sys, "argv", ["latentbench", *args])
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def tiny_dir() -> Path:
    return saved_tiny_model("llama", seed=1)


@pytest.fixture
def echo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.METHODS, "echo", f"{__name__}:EchoMethod")


def test_throwaway_method_is_listed_and_described(echo, capsys, monkeypatch) -> None:
    code, out, _ = cli(capsys, monkeypatch, "methods")
    assert code == 0 and any(line.startswith("echo ") and "Echoes the gold" in line for line in out.splitlines())
    code, out, _ = cli(capsys, monkeypatch, "methods", "echo")
    assert code == 0 and "writes: kv-shard" in out
    for flag, kind, help_ in [("--repeat", "int", "How many times"), ("--shout", "bool", "Upper-case"),
                              ("--note", "str | None", "Free text"), ("--weights", "dict[str, float]", "Arbitrary")]:
        line = next(line for line in out.splitlines() if line.strip().startswith(flag + " "))
        assert kind in line and help_ in line


def test_a_trainers_fields_are_listed(capsys, monkeypatch) -> None:
    code, out, _ = cli(capsys, monkeypatch, "methods")
    assert code == 0 and "trainers (latentbench train NAME): prm" in out
    code, out, _ = cli(capsys, monkeypatch, "methods", "prm")
    assert code == 0 and "PrmConfig" in out
    for flag in ("--head", "--max-steps", "--lora-rank"):  # the trainer's own fields and TrainConfig's
        assert any(line.strip().startswith(flag + " ") for line in out.splitlines()), flag


def test_throwaway_method_runs_through_eval(echo, capsys, monkeypatch, tiny_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "echo.yaml"
    cfg.write_text("repeat: 3\nnote: from the file\n")
    code, out, err = cli(capsys, monkeypatch, "eval", "gsm8k", "--method", "echo", "--limit", "2", "--model",
                         str(tiny_dir), "--output-path", str(tmp_path), "--config", str(cfg), "--repeat", "2",
                         "--shout", "--method-arg", 'weights={"a": 0.5}', "--seed", "3")
    assert code == 0, err
    record = json.loads(Path(out.strip().splitlines()[-1].removeprefix("results: ")).read_text())
    config = {"repeat": 2, "shout": True, "note": "from the file", "weights": {"a": 0.5}}
    assert record["method"] == {"name": "echo", "config": config, "resolved": config}  # no resolved(): as given
    assert record["metrics"]["accuracy_flexible"] == 1.0  # the gold, echoed twice, upper-cased
    assert record["method_metrics"] == {"echo_repeat": 2.0, "tag": 1.0}
    assert record["schema_version"] == "results.v2" and record["seed"] == 3


def test_throwaway_method_generates_a_valid_dataset(echo, capsys, monkeypatch, tiny_dir: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "echo-ds"
    code, out, err = cli(capsys, monkeypatch, "generate", "gsm8k", "--method", "echo", "--limit", "2", "--model",
                         str(tiny_dir), "--output", str(out_dir), "--repeat", "2")
    assert code == 0, err
    assert "echo dataset with 2 examples" in out
    code, out, err = cli(capsys, monkeypatch, "validate", str(out_dir))
    assert code == 0 and out.startswith("ok:"), out + err
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["kind"] == "kv-shard" and manifest["method_config"]["repeat"] == 2


@pytest.mark.parametrize(("args", "needle"), [
    (["--method", "echo", "--repeat", "0"], "error: --repeat: must be >= 1"),
    (["--method", "echo", "--method-arg", "repeat=0"], "error: --method-arg repeat: must be >= 1"),
    (["--method", "echo", "--repeat", "two"], "error: --repeat=two: expected int"),
    (["--method", "echo", "--volume", "3"], "error: --volume: no such option for --method echo"),
    (["--method", "echo", "--weights", "[1, 2]"], "error: --weights=[1, 2]: expected a mapping"),
    (["--method", "latent-tree", "--latent-temperature", "-1"], "error: --latent-temperature: must be >= 0"),
    (["--method", "latent-tree", "--kv-dtype", "int8"], "error: --kv-dtype=int8: expected one of model"),
    (["--method", "latent-mas", "--pipeline", "planner,judge"], "no prompt for role(s) judge"),
    (["--method", "latent-tree", "--method-arg", "seed=3", "--seed", "5"], "the run's seed is set with --seed"),
    (["--method", "echo", "stray"], "unexpected argument 'stray'"),
])
def test_config_errors_name_the_flag_typed(echo, capsys, monkeypatch, args: list[str], needle: str) -> None:
    code, _, err = cli(capsys, monkeypatch, "eval", "gsm8k", "--limit", "1", *args)
    assert code == 2 and "Traceback" not in err, err
    assert needle in err and len(err.strip().splitlines()) == 1, err


def test_config_file_errors_name_the_file_and_key(echo, capsys, monkeypatch, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("repeat: 0\n")
    code, _, err = cli(capsys, monkeypatch, "eval", "gsm8k", "--method", "echo", "--config", str(cfg))
    assert code == 2 and f"--config {cfg}: repeat: must be >= 1" in err
    cfg.write_text("- not a mapping\n")
    code, _, err = cli(capsys, monkeypatch, "eval", "gsm8k", "--method", "echo", "--config", str(cfg))
    assert code == 2 and "expected a mapping of config fields" in err


def test_the_run_seed_reaches_the_latent_tree(capsys, monkeypatch, tiny_dir: Path, tmp_path: Path) -> None:
    code, out, err = cli(capsys, monkeypatch, "eval", "gsm8k", "--method", "latent-tree", "--limit", "1", "--seed", "5",
                         "--model", str(tiny_dir), "--output-path", str(tmp_path), "--agents", "1", "--branches", "2",
                         "--latent-steps", "1", "--keep", "1", "--max-new-tokens", "2")
    assert code == 0, err
    record = json.loads(Path(out.strip().splitlines()[-1].removeprefix("results: ")).read_text())
    assert record["seed"] == 5 and record["method"]["config"]["seed"] == 5


def test_generate_refuses_an_eval_only_method_and_a_foreign_kind(capsys, monkeypatch) -> None:
    code, _, err = cli(capsys, monkeypatch, "generate", "gsm8k", "--method", "cot", "--limit", "1")
    assert code == 2 and "--method cot writes no datasets" in err
    code, _, err = cli(capsys, monkeypatch, "generate", "gsm8k", "--kind", "spd-trace", "--limit", "1")
    assert code == 2 and "--kind 'spd-trace': method latent-tree writes latent-tree" in err
