"""GSM8k-Aug (iCoT) `valid.txt` as the `aug_valid` split of gsm8k: read into GSM8K-shaped records."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import saved_tiny_model

from latentbench.errors import DataFormatError, DataNotFoundError
from latentbench.tasks import get_task
from latentbench.tasks.card import TaskCard
from latentbench.tasks.sources import read_records

FIRST = ("John cuts his grass to 2 inches.  It grows .5 inches per month.  When it gets to 4 inches he cuts "
         "it back down to 2 inches.  It cost $100 to get his grass cut.  How much does he pay per year?")
SMALL = {"agents": 2, "branches": 2, "latent_steps": 2, "keep": 3, "max_new_tokens": 6}


def _fake_data_dir(tmp_path: Path, text: str) -> Path:
    (tmp_path / "gsm8k_aug").mkdir()
    (tmp_path / "gsm8k_aug" / "valid.txt").write_text(text, encoding="utf-8")
    return tmp_path


def test_card_pins_the_shared_file(data_dir: Path) -> None:
    task = get_task("gsm8k")
    spec = task.card.splits["aug_valid"]
    assert (spec.file, spec.format, spec.hub_split) == ("gsm8k_aug/valid.txt", "icot", None)
    assert task.data_files("aug_valid", data_dir) == [{
        "name": "gsm8k_aug/valid.txt", "modified": False,
        "sha256": "04f9bddfe8ac4846571b1e2b612b289c95770b5012fdb34cc36a597b041afb87",
        "pinned_sha256": "04f9bddfe8ac4846571b1e2b612b289c95770b5012fdb34cc36a597b041afb87"}]
    assert "test" in task.card.splits and not any("gsm8k_aug/test" in s.file for s in task.card.splits.values())


def test_aug_valid_loads_500_examples_with_their_step_chains(data_dir: Path) -> None:
    examples = get_task("gsm8k").examples("aug_valid", data_dir=data_dir)
    assert len(examples) == 500
    assert len({e.id for e in examples}) == 500
    first = examples[0]
    assert (first.id, first.question, first.gold) == ("gsm8k/aug_valid/0", FIRST, "300")
    assert first.meta["solution"] == "<<4-2=2>>\n<<2/.5=4>>\n<<12/4=3>>\n<<100*3=300>>\n#### 300"
    lines = first.meta["solution"].splitlines()
    assert len(lines) == 5 and lines[-1] == "#### 300"
    assert all(line.startswith("<<") and line.endswith(">>") for line in lines[:4])
    second = examples[1]
    assert second.gold == "10" and second.meta["solution"].splitlines() == [
        "<<1.5*2=3>>", "<<3+2.5=5.5>>", "<<1.5+3+5.5=10>>", "#### 10"]
    assert examples[89].meta["solution"] == "#### 9"  # a record with no steps (`|| #### 9`)
    assert examples[192].gold == "5000" and examples[192].meta["solution"].endswith("\n#### 5,000")


def test_every_aug_valid_gold_scores_correct_and_a_wrong_one_does_not(data_dir: Path) -> None:
    task = get_task("gsm8k")
    examples = task.examples("aug_valid", data_dir=data_dir)
    assert all(task.score(ex, task.gold_output(ex)).correct == {"strict": True, "flexible": True} for ex in examples)
    assert task.score(examples[0], "The answer is 301.").correct == {"strict": False, "flexible": False}


def test_record_shape_matches_a_gsm8k_record(tmp_path: Path) -> None:
    data = _fake_data_dir(tmp_path, "Q one?||<<1+1=2>>  <<2*3=6>> #### 6\n\nQ two?|| #### 1,200\r\n")
    card = get_task("gsm8k").card
    assert read_records(card, "aug_valid", data, allow_modified=True) == [
        {"question": "Q one?", "answer": "<<1+1=2>>\n<<2*3=6>>\n#### 6"},
        {"question": "Q two?", "answer": "#### 1,200"}]


@pytest.mark.parametrize(("line", "problem"), [
    ("no separator here <<1+1=2>> #### 2", "no '||' after the question"),
    ("Q?||<<1+1=2>> 2", "no '####' before the answer"),
    ("Q?||<<1+1=2>> #### ", "an empty answer"),
    ("||<<1+1=2>> #### 2", "an empty question"),
])
def test_malformed_line_names_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    data = _fake_data_dir(tmp_path, f"Q?||<<1+1=2>> #### 2\n{line}\n")
    path = data / "gsm8k_aug" / "valid.txt"
    with pytest.raises(DataFormatError) as info:
        get_task("gsm8k").examples("aug_valid", data_dir=data, allow_modified_data=True)
    assert str(info.value) == f"{path}:2: expected an iCoT line 'question||steps #### answer', got {problem}"


def test_icot_format_is_only_used_where_the_card_says(tmp_path: Path) -> None:
    """The same text under a split without `format: icot` is read as JSON lines (and fails as such)."""
    data = _fake_data_dir(tmp_path, "Q?||<<1+1=2>> #### 2\n")
    card = get_task("gsm8k").card
    plain = dataclasses.replace(card, splits={**card.splits,
                                              "aug_valid": dataclasses.replace(card.splits["aug_valid"], format=None)})
    with pytest.raises(DataFormatError, match=r"valid\.txt:1: not valid JSON"):
        read_records(plain, "aug_valid", data, allow_modified=True)


def test_aug_valid_has_no_online_source() -> None:
    """Local only: with no data dir it says so, instead of asking openai/gsm8k for a split it lacks."""
    with pytest.raises(DataNotFoundError, match="gsm8k/aug_valid: no online source"):
        get_task("gsm8k").examples("aug_valid")


def test_test_split_is_unaffected(data_dir: Path) -> None:
    task = get_task("gsm8k")
    assert task.card.default_split == "test" and task.card.splits["test"].format is None
    examples = task.examples(data_dir=data_dir)
    assert len(examples) == 1319 and examples[0].id == "gsm8k/test/0" and examples[0].gold == "18"
    assert examples[0].meta["solution"].startswith("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.")


@pytest.mark.parametrize(("splits", "needle"), [
    ("  aug-valid: {file: a.txt}\n", "split name 'aug-valid' must match"),
    ("  x: {file: a.txt, format: csv}\n", "splits.x.format 'csv' is not one of"),
    ("  x: {file: a.txt, fromat: icot}\n", "splits.x must be a mapping with file and optionally"),
])
def test_card_rejects_bad_splits(tmp_path: Path, splits: str, needle: str) -> None:
    card = tmp_path / "t.yaml"
    card.write_text("name: t\nlicense: MIT\nanswer_kind: number\nadapter: gsm8k\ndefault_split: test\nsource: {}\n"
                    f"splits:\n  test: {{file: t.jsonl}}\n{splits}fields: {{}}\nprompt: p\n")
    with pytest.raises(DataFormatError, match=needle):
        TaskCard.from_yaml(card)


def test_generate_writes_an_aug_valid_dataset(data_dir: Path, tmp_path: Path) -> None:
    """The split name is also the generated dataset's split (the manifest schema and `datasets` need \\w+)."""
    from latentbench.generate import GenerateRequest, generate
    from latentbench.store import open_dataset

    out = generate(GenerateRequest(task="gsm8k", split="aug_valid", limit=1, model=str(saved_tiny_model()),
                                   output=str(tmp_path / "ds"), data_dir=str(data_dir), method_args=SMALL,
                                   show_progress=False))
    import datasets

    ds = open_dataset(out)
    manifest = ds.manifest
    assert manifest["split"] == "aug_valid"
    assert [f["name"] for f in manifest["data_files"]] == ["gsm8k_aug/valid.txt"]
    assert manifest["counts"]["examples"] == 1
    table = next(t for t in ds.tables if manifest["counts"]["tables"][t])
    hf = datasets.load_dataset(str(out), table, split="aug_valid")
    assert hf.num_rows == manifest["counts"]["tables"][table] > 0
