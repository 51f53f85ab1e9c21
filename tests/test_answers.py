"""Answer extraction: a table of tricky outputs, each pinned to its strict and flexible reading."""

from __future__ import annotations

import ast
import dataclasses
import gzip
import json
from pathlib import Path

import pytest

from latentbench.tasks.answers import (
    Extraction,
    extract,
    extract_choice,
    extract_code,
    extract_number,
    normalize_number,
    numbers_equal,
    parse_gsm8k_gold,
)

NORMALIZE = [
    ("1,450,000", "1450000"),  # the gold a popular regex reads as "1"
    ("$1,000.50", "1000.5"),
    ("50%", "50"),
    ("12 dollars", "12"),
    ("5 cm", "5"),
    ("3.5kg", "3.5"),
    ("2.50", "2.5"),
    ("3.0", "3"),
    (".5", "0.5"),
    ("-3", "-3"),
    ("\u22123", "-3"),  # unicode minus
    ("-0", "0"),
    ("3/4", "0.75"),
    ("2/6", "1/3"),  # no finite decimal: a reduced fraction
    ("1 1/2", "1.5"),
    (r"\frac{3}{4}", "0.75"),
    (r"-\dfrac{1}{8}", "-0.125"),
    (r"2\frac{1}{2}", "2.5"),
    (r"\$5", "5"),
    ("-$5", "-5"),
    ("1.5e3", "1500"),
    (r"1{,}000", "1000"),
    ("x2 and 7", "7"),  # digits glued to a letter are not a number
    ("COVID-19", None),
    ("1,4500", "1"),  # not a thousands group: "1" then "4500"
    ("no number", None),
    ("1/0", None),
]


@pytest.mark.parametrize(("text", "expected"), NORMALIZE)
def test_normalize_number(text: str, expected: str | None) -> None:
    assert normalize_number(text) == expected


# (model output, strict reading, flexible reading)
NUMBERS = [
    ("#### 1,234", "1234", "1234"),
    ("#### 1,450,000", "1450000", "1450000"),
    (r"\boxed{\frac{1}{2}}", "0.5", "0.5"),
    ("The answer is $18.", "18", "18"),
    ("**Answer:** 42", "42", "42"),
    ("The answer is 5 apples.", "5", "5"),
    ("The final answer is: $\\boxed{-3}$", "-3", "-3"),
    ("The answer is \u22123.", "-3", "-3"),
    ("The answer is: **$1,450,000**", "1450000", "1450000"),
    ("Final Answer: The final answer is 3/4. I hope it is correct.", "0.75", "0.75"),
    ("The answer is 16 - 3 - 4 = 9.", "9", "9"),  # "=" in the marker's sentence: after the last "="
    (r"\boxed{x = 5}", "5", "5"),
    ("#### 10\nThe answer is 12", "12", "12"),  # the last marker wins
    (r"\boxed{12} ... wait, the answer is 13", "13", "13"),
    ("Total: 2,000. Answer: 2000", "2000", "2000"),
    ("The answer is 1 1/2 cups.", "1.5", "1.5"),
    ("answer = 7", "7", "7"),
    ("answer: .75", "0.75", "0.75"),
    ("The answer is 1.5e3", "1500", "1500"),
    ("I think the answer is (3)", "3", "3"),
    (r"\boxed{18", "18", "18"),  # unterminated box: to the end
    ("It costs $1,000.50.", None, "1000.5"),
    ("That is 50%.", None, "50"),
    ("Step 1: 3 apples. Step 2: 4 more, so 7 total.", None, "7"),
    ("So she has 7 left. Step 2:", None, "2"),  # flexible is just the last number
    ("The answer is not obvious. We compute 5 + 3 = 8.", None, "8"),  # marker's sentence has no number
    ("Answer: Let's think step by step. 2 + 2 = 4", None, "4"),
    ("The temperature dropped to -12.", None, "-12"),
    ("5-3 is 2", None, "2"),
    ("She made $70,000 profit.", None, "70000"),
    ("I have 1,2,3", None, "3"),  # a list, not thousands
    ("so 48/2 = 24", None, "24"),
    ("The area is 12 m^2", None, "12"),  # an exponent is not the answer
    ("There are x2 values", None, None),
    ("The answer is twenty", None, None),  # number words are not read
    (r"\boxed{}", None, None),
    ("no numbers here", None, None),
    ("answering is 7 fun", None, "7"),  # "answering" is not the word "answer"
]


@pytest.mark.parametrize(("text", "strict", "flexible"), NUMBERS)
def test_extract_number(text: str, strict: str | None, flexible: str | None) -> None:
    assert extract_number(text, strict=True) == strict
    assert extract_number(text, strict=False) == flexible
    assert extract(text, "number") == Extraction(strict, flexible)


OPTIONS = {
    "A": "Aspirin",
    "B": "Aspirin and heparin",
    "C": "Report the physician to the ethics committee",
    "D": "Vitamin D deficiency",
}
LISTING = "A. Aspirin\nB. Aspirin and heparin\nC. Report the physician to the ethics committee\nD. Vitamin D deficiency"

# (model output, strict reading, flexible reading) with OPTIONS
CHOICES = [
    ("Answer: C", "C", "C"),
    ("The answer is (B).", "B", "B"),
    ("the answer is b", "B", "B"),
    ("The answer is A.", "A", "A"),
    ("The answer is A because aspirin helps", "A", "A"),  # a connective after "A"
    ("the answer is c because", "C", "C"),
    ("Answer: (a)", "A", "A"),
    ("answer: d)", "D", "D"),
    ("the answer: b, because", "B", "B"),
    ("Answer:\n\nB", "B", "B"),
    (r"\boxed{C}", "C", "C"),
    (r"$\boxed{\text{D}}$", "D", "D"),
    ("The correct answer is **B**", "B", "B"),
    ("The best option is D", "D", "D"),
    ("answer is option c.", "C", "C"),
    ("the answer is: [C]", "C", "C"),
    ("(B) is correct.", "B", "B"),
    ("Answer: C\nWait, the answer is D", "D", "D"),  # the last marker wins
    ("A patient presents with fever.", None, None),  # the article, not a choice
    ("Answer: A patient with fever", None, None),
    ("the answer is a bit unclear", None, None),
    ("Answer: I", None, None),  # not one of the letters
    ("In summary, the answer is (E)", None, None),
    ("(B)", None, "B"),
    ("**C**", None, "C"),  # bold alone is not strict: models bold option lists
    ("I think C) is right", None, "C"),
    ("Choose D. Because", None, "D"),
    ("B", None, "B"),
    ("SS-B) antibody", None, None),  # a hyphenated name, not a lone letter
    ("It is caused by U.S.A. policy", None, None),
    ("Report the physician to the ethics committee", None, "C"),  # option text, once
    ("aspirin and heparin is best", None, "B"),  # "aspirin" only inside the longer option
    ("aspirin", None, "A"),
    ("Aspirin or aspirin and heparin", None, None),  # two options seen: ambiguous
    (LISTING, None, None),  # re-listing the options picks nothing
    (LISTING + "\nI pick B.", None, "B"),
]


@pytest.mark.parametrize(("text", "strict", "flexible"), CHOICES)
def test_extract_choice(text: str, strict: str | None, flexible: str | None) -> None:
    assert extract_choice(text, OPTIONS, strict=True) == strict
    assert extract_choice(text, OPTIONS, strict=False) == flexible
    assert extract(text, "choice", OPTIONS) == Extraction(strict, flexible)


def test_choice_without_options_and_letters() -> None:
    assert extract_choice(LISTING) == "D"  # without options a listing cannot be told apart
    assert extract_choice("Answer: E") is None
    assert extract_choice("Answer: E", letters="ABCDE") == "E"
    with pytest.raises(ValueError, match="letters"):
        extract_choice("Answer: a", letters="abcd")


def test_numbers_equal() -> None:
    assert numbers_equal("0.75", "3/4")
    assert numbers_equal("1,450,000", "1450000")
    assert numbers_equal("1/3", "0.3333333")
    assert not numbers_equal("1/3", "0.333")
    assert not numbers_equal("1", "1.0001")
    assert numbers_equal("1", "1.0001", rel_tol=1e-3)
    assert numbers_equal("-0", "0")
    assert not numbers_equal("5", "nothing")


def test_gsm8k_gold_and_kinds() -> None:
    assert parse_gsm8k_gold("She has 2 + 3 = 5.\n#### 5") == "5"
    assert parse_gsm8k_gold("#### 1\nfix: #### 1,450,000") == "1450000"  # the last "####"
    with pytest.raises(ValueError, match="####"):
        parse_gsm8k_gold("The answer is 5")
    with pytest.raises(ValueError, match="####"):
        parse_gsm8k_gold("#### none")
    with pytest.raises(ValueError, match="kind"):
        extract("5", "code")  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Extraction("1", "1").strict = "2"  # type: ignore[misc]


PROMPT = '''from typing import List


def has_close(numbers: List[float], t: float) -> bool:
    """Whether two numbers are closer than t."""
'''
BODY = "    return any(abs(a - b) < t for i, a in enumerate(numbers) for b in numbers[i + 1 :])\n"
FUNC = "def has_close(numbers: List[float], t: float) -> bool:\n" + BODY

CODE = [
    # fenced block amid chatter, prompt's import restored
    (
        "fenced",
        f"Sure! Here it is:\n```python\n{FUNC}```\nThis works because...",
        "from typing import List\n\n" + FUNC,
    ),
    # the block that defines the entry point wins over a helper and a usage block; no import duplicated
    (
        "several fences",
        "```python\ndef helper(x):\n    return x\n```\nNow:\n```python\nfrom typing import List\n"
        f"{FUNC}```\nTest:\n```python\nprint(has_close([1.0], 0.1))\n```",
        "from typing import List\n" + FUNC,
    ),
    (
        "other language fence",
        f"```bash\npip install numpy\n```\n```py\n{FUNC}```",
        "from typing import List\n\n" + FUNC,
    ),
    ("unterminated fence", f"```python\n{FUNC}", "from typing import List\n\n" + FUNC),
    (
        "bare def",
        f"Here is my solution.\n{FUNC}\nThis function checks pairs.",
        "from typing import List\n\n" + FUNC,
    ),
    ("body continuation", BODY + "\nThe above code checks every pair.", PROMPT + BODY),
    ("body without indentation", BODY.strip(), PROMPT + BODY),
    (
        "helper only",
        "```python\ndef _pairs(xs):\n    return []\n```",
        PROMPT + "\n\ndef _pairs(xs):\n    return []\n",
    ),
    ("no code", "I cannot solve this.", PROMPT),
    # stray fences: none of them may swallow the function
    ("stray empty fence before", f"```\n```python\n{FUNC}```", "from typing import List\n\n" + FUNC),
    ("empty fenced block before", f"```python\n```\n{FUNC}```\nDone.", "from typing import List\n\n" + FUNC),
    ("stray fence after", f"```python\n{FUNC}```\n```", "from typing import List\n\n" + FUNC),
    ("unpaired fences around bare code", f"Here:\n```\n```\n{FUNC}```\n", "from typing import List\n\n" + FUNC),
    ("fence glued to the last line", f"```python\n{FUNC.rstrip()}```\nDone.", "from typing import List\n\n" + FUNC),
    ("indented fences", f"1. Code:\n   ```python\n{FUNC}   ```\n", "from typing import List\n\n" + FUNC),
    ("function under a non-python tag", f"```text\n{FUNC}```", "from typing import List\n\n" + FUNC),
    (
        "stray fence inside the function",
        f"```python\n{FUNC.splitlines()[0]}\n```\n{BODY}```",
        "from typing import List\n\n" + FUNC,
    ),
    (
        "a later block only calls it",
        f"```python\n{FUNC}```\nUsage:\n```python\nhas_close([1.0, 2.0], 0.5)\n```",
        "from typing import List\n\n" + FUNC,
    ),
    (
        "fenced code opening with a constant",
        f"```python\nEPS = 0.0\n{FUNC}```",
        "from typing import List\n\nEPS = 0.0\n" + FUNC,
    ),
]


@pytest.mark.parametrize(("case", "text", "expected"), CODE, ids=[c[0] for c in CODE])
def test_extract_code(case: str, text: str, expected: str) -> None:
    program = extract_code(text, PROMPT, "has_close")
    assert program == expected
    ast.parse(program)


def test_extract_code_keeps_prompt_helpers() -> None:
    prompt = 'import math\n\n\ndef encode(s: str) -> str:\n    return s[::-1]\n\n\ndef decode(s: str) -> str:\n    """Undo encode."""\n'
    program = extract_code(
        "```python\ndef decode(s: str) -> str:\n    return encode(s)\n```", prompt, "decode"
    )
    assert (
        program
        == "import math\ndef encode(s: str) -> str:\n    return s[::-1]\n\ndef decode(s: str) -> str:\n    return encode(s)\n"
    )


MBPP_PROMPT = '"""\nWrite a function to find the shared elements from the given two lists.\n"""\n'
MBPP_FUNC = "def similar_elements(a, b):\n    return tuple(set(a) & set(b))\n"


@pytest.mark.parametrize("text", [
    f"```\n```python\n{MBPP_FUNC}```",  # the MBPP+ answer that scored KeyError
    f"```\n\n```python\n{MBPP_FUNC}```\nThis returns the shared elements.",
    f"```python\n```\n\n{MBPP_FUNC}",
    f"``````python\n{MBPP_FUNC}```",
], ids=["empty fence then python block", "blank-line fence then block and prose", "empty block then bare code",
        "empty fence glued to the opener"])
def test_extract_code_finds_the_function_past_a_stray_empty_fence(text: str) -> None:
    program = extract_code(text, MBPP_PROMPT, "similar_elements")
    assert program == MBPP_FUNC
    namespace: dict = {}
    exec(compile(program, "<extracted>", "exec"), namespace)  # trusted test input, not model output
    assert sorted(namespace["similar_elements"]((3, 4, 5), (5, 7, 4))) == [4, 5]


def _humaneval(data_dir: Path) -> list[dict]:
    with gzip.open(data_dir / "humaneval" / "HumanEval.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


def test_extract_code_on_every_humaneval_solution(data_dir: Path) -> None:
    """Body continuation rebuilds prompt + solution; a fenced program without imports gets them back."""
    problems = _humaneval(data_dir)
    assert len(problems) == 164
    for p in problems:
        prompt, entry, solution = p["prompt"], p["entry_point"], p["canonical_solution"]
        assert extract_code(solution, prompt, entry).rstrip() == (prompt + solution).rstrip(), p["task_id"]
        no_imports = "\n".join(
            line for line in (prompt + solution).split("\n") if not line.startswith(("import ", "from "))
        )
        program = extract_code(f"Here you go:\n```python\n{no_imports}\n```\nHope it helps!", prompt, entry)
        ast.parse(program)
        imports = [line for line in prompt.split("\n") if line.startswith(("import ", "from "))]
        assert all(line in program.split("\n") for line in imports), p["task_id"]
        assert "Hope it helps" not in program and "Here you go" not in program
