"""Answer extraction: numbers, multiple-choice letters and code, each with a strict and a flexible reading.

Strict reads only explicit answer markers; flexible falls back to a best guess. Rules for the cases
that need a decision (tests/test_answers.py pins each one):

Numbers
- A number is ``-1,450,000.5``, ``.5``, ``3/4``, ``1 1/2``, ``1.5e3`` or LaTeX ``\\frac{3}{4}``.
  Commas count as thousands separators only in groups of exactly three digits ("1,2,3" is a list);
  so do spaces, no-break spaces (U+00A0) and thin spaces (U+2009, U+202F), one kind per number
  ("1 000 000", "12 345.5"); irregular groups stay apart ("1 00 000" is 1, 00 and 000).
- Digits glued to a letter, ``^`` or ``.`` are not numbers: "x2", "H2O", "COVID-19", "m^2", "v1.2".
  Units and words after a number are ignored ("3.5kg", "12 dollars", "2nd").
- "-" is a minus sign unless it follows a word character or a bracket ("5-3" is 5 and 3).
- Canonical form: a plain decimal without trailing zeros ("2.50" -> "2.5", "-0" -> "0"); a fraction
  that has no finite decimal stays a reduced fraction ("2/6" -> "1/3").
- Strict markers: ``#### n``, ``\\boxed{n}``, "answer is n", "Answer: n", "answer = n" (any case, ``**``
  allowed). The number must sit in the marker's sentence; if that sentence has "=", the number after
  the last "=" wins ("The answer is 16 - 3 - 4 = 9" -> 9). The last marker that holds a number wins.
- Flexible: strict, else the last number in the text. Number words ("five") are not read.

Choices
- Strict markers: "answer/choice/option is X", "Answer: X", "(X) is correct", ``\\boxed{X}``; last wins.
  A lowercase or bare letter counts, except that a bare "A"/"I" followed by a word counts only before a
  connective ("because", "since", ...): "Answer: A patient..." is the article, not a choice.
- ``**C**`` is not strict: models bold option letters when they list the options.
- Flexible: strict, else the last uppercase lone letter "(C)", "[C]", "C)", "C.", "**C**", or a line
  holding only "C" (a line that re-lists an option, "C. <its text>", is skipped); else the single
  option whose text appears in the output, ignoring case and spacing. An option seen only inside a
  longer option's text does not count; two options seen -> None. Flexible can misread "vitamin D.".

Code: ``extract_code`` returns a whole program; its docstring gives the rules.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Literal

from latentbench.errors import DataFormatError

# --- numbers ---------------------------------------------------------------------------------------

_GROUP_SEPARATORS = str.maketrans("", "", ", \u00a0\u2009\u202f")  # thousands separators, dropped
_MINUS_SIGNS = str.maketrans({"\u2212": "-", "\u2012": "-", "\u2013": "-", "\ufe63": "-", "\uff0d": "-"})
# \frac{3}{4}, \dfrac{-1}{2}, \tfrac{1.5}{3}, optionally after a whole part ("1\frac{1}{2}")
_LATEX_FRAC = re.compile(r"(?:(\d) ?)?\\[dt]?frac\{\s*(-?[\d.]+)\s*\}\{\s*([\d.]+)\s*\}")
# \frac12: the brace-less form for single digits
_LATEX_FRAC_SHORT = re.compile(r"(?:(\d) ?)?\\[dt]?frac(\d)(\d)")
# LaTeX thousands separators between digits: "1{,}000", "1\,000"
_LATEX_THOUSANDS = re.compile(r"(?<=\d)(?:\{,\}|\\,)(?=\d{3})")

_NUMBER = re.compile(
    r"""
    (?:(?<![\w)\]])(?P<neg>-)\$?)?        # a minus sign, not subtraction ("5-3"); "-$5" too
    (?<![\w.^])(?<![A-Za-z_]-)            # not glued to a word, exponent or dot: x2, COVID-19, m^2
    (?P<num>
        \d+[ ]\d+/\d+                     # mixed fraction: 1 1/2
      | \d+(?:\.\d+)?/\d+(?:\.\d+)?       # fraction: 3/4, 1.5/3
      | \d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?  # thousands separators: 1,450,000 and 1,000.50
      | \d{1,3}(?P<sp>[ \u00a0\u2009\u202f])\d{3}(?:(?P=sp)\d{3})*(?!\d)(?:\.\d+)?  # 1 000 000, 12 345.5
      | \d+(?:\.\d+)?(?:[eE][-+]?\d{1,3}(?!\d))?  # plain, decimal, scientific: 12, 2.50, 1.5e3
      | \.\d+                             # leading dot: .5
    )
    """,
    re.VERBOSE | re.ASCII,
)
# End of a marker's sentence: a period not inside a decimal, "!", "?", ";" or a newline
_SENTENCE_END = re.compile(r"\.(?!\d)|[!?;\n]")
# "#### 18": GSM8K's final-answer line
_HASH_MARKER = re.compile(r"####")
# "The (final) answer is: $18$", "**Answer:** 42", "answer = 7"
_ANSWER_MARKER = re.compile(r"\banswer\b[*\s]*(?:is\b|:|=)", re.IGNORECASE)
# \boxed{ or \fbox{: the payload runs to the matching brace
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def _prep(text: str) -> str:
    """Rewrite unicode minus signs and LaTeX number forms into plain text the number regex reads."""
    text = text.translate(_MINUS_SIGNS).replace("\\$", "$").replace("\\%", "%")
    text = _LATEX_THOUSANDS.sub(",", text)
    for pattern in (_LATEX_FRAC, _LATEX_FRAC_SHORT):
        text = pattern.sub(lambda m: f"{m[1]} {m[2]}/{m[3]}" if m[1] else f"{m[2]}/{m[3]}", text)
    return text


def _to_fraction(num: str) -> Fraction | None:
    """Exact value of one matched number token; None for a zero denominator."""
    if "/" in num:
        head, _, num = num.rpartition(" ")  # a mixed fraction's whole part, if any
        top, bottom = (Fraction(part) for part in num.split("/"))
        return None if bottom == 0 else Fraction(head or 0) + top / bottom
    return Fraction(num.translate(_GROUP_SEPARATORS))


def _power(n: int, p: int) -> int:
    count = 0
    while n % p == 0:
        n, count = n // p, count + 1
    return count


def _format(value: Fraction) -> str:
    """Canonical string: a finite decimal without trailing zeros, else a reduced 'p/q'."""
    num, den = value.numerator, value.denominator
    twos, fives = _power(den, 2), _power(den, 5)
    if den != 2**twos * 5**fives:
        return f"{num}/{den}"
    places = max(twos, fives)
    digits = str(abs(num) * 10**places // den).rjust(places + 1, "0")
    whole, frac = digits[: len(digits) - places], digits[len(digits) - places :].rstrip("0")
    sign = "-" if num < 0 else ""
    return f"{sign}{whole}.{frac}" if frac else f"{sign}{whole}"


def _values(text: str) -> list[Fraction]:
    """Every number in already-prepped text, in order."""
    found = []
    for match in _NUMBER.finditer(text):
        value = _to_fraction(match["num"])
        if value is not None:
            found.append(-value if match["neg"] else value)
    return found


def normalize_number(text: str) -> str | None:
    """Canonical string of the first number in ``text`` ("$1,000.50" -> "1000.5"), None if none."""
    values = _values(_prep(text))
    return _format(values[0]) if values else None


def numbers_equal(a: str, b: str, rel_tol: float = 1e-6) -> bool:
    """Whether two numbers (canonical or raw) agree within ``rel_tol``; False if either has none."""
    va, vb = _values(_prep(a)), _values(_prep(b))
    if not va or not vb:
        return False
    x, y = va[0], vb[0]
    return x == y or abs(x - y) <= Fraction(rel_tol) * max(abs(x), abs(y))


def _braced(text: str, start: int) -> str:
    """Content from ``start`` (just past an opening brace) to its matching brace, or to the end."""
    depth = 1
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    return text[start:]


def _payload_number(payload: str) -> str | None:
    """The answer in a marker's payload: after the last "=" if any, else the first number."""
    values = _values(payload.rsplit("=", 1)[-1]) or _values(payload)
    return _format(values[0]) if values else None


def _sentence(text: str, start: int) -> str:
    """Text from ``start`` to the end of its sentence, skipping the marker's own ' *:$' decoration."""
    lead = len(text) - start - len(text[start:].lstrip(" *:$\t"))
    end = _SENTENCE_END.search(text, start + lead)
    return text[start : end.start() if end else len(text)]


def _marked_numbers(text: str) -> list[tuple[int, str]]:
    """(position, number) for every strict marker in prepped text that holds a number."""
    marks = [(m.start(), _braced(text, m.end())) for m in _BOXED.finditer(text)]
    for pattern in (_HASH_MARKER, _ANSWER_MARKER):
        marks += [(m.start(), _sentence(text, m.end())) for m in pattern.finditer(text)]
    found = [(pos, _payload_number(payload)) for pos, payload in marks]
    return [(pos, num) for pos, num in found if num is not None]


def extract_number(text: str, strict: bool) -> str | None:
    """The model's numeric answer, normalized; see the module docstring for the rules."""
    text = _prep(text)
    marked = _marked_numbers(text)
    if marked:
        return max(marked)[1]
    if strict:
        return None
    values = _values(text)
    return _format(values[-1]) if values else None


def parse_gsm8k_gold(answer: str) -> str:
    """The gold number after the last '#### ' of a GSM8K answer, normalized."""
    _, sep, tail = answer.rpartition("####")
    gold = normalize_number(tail) if sep else None
    if gold is None:
        snippet = answer[-60:].replace("\n", " ")
        raise DataFormatError(f"GSM8K answer has no '#### <number>' line (ends with: {snippet!r})")
    return gold


# --- multiple choice -------------------------------------------------------------------------------

# After a bare "A"/"I": end of line, punctuation, or a connective ("The answer is A because ...")
_CONNECTIVE = re.compile(r"[ \t]*(?:$|[^\w\s])|[ \t]+(?:because|since|as|which|and|so|given)\b", re.I | re.M)
_ARTICLE_LETTERS = {"A", "I"}


@lru_cache(maxsize=16)
def _choice_patterns(letters: str) -> tuple[re.Pattern[str], ...]:
    cls = f"[{letters}]"
    box = r"(?P<box>\$?\\boxed\{(?:\\text(?:bf)?\{)?)"
    return (
        # "The answer is (B)", "Answer: C", "best choice is option D", "answer: $\boxed{B}$"
        re.compile(
            r"\b(?:answer|choice|option)\b[*\s]*(?:is\b|:|=)[*:\s]*(?:(?:option|choice|letter)\s+)?"
            rf"{box}?(?P<open>[(\[])?(?P<letter>{cls})(?(open)[)\]])(?![\w'])",
            re.IGNORECASE,
        ),
        # "\boxed{C}", "\boxed{\text{C}}" anywhere
        re.compile(rf"{box}\s*(?P<letter>{cls})\s*\}}", re.IGNORECASE),
        # "(B) is correct", "C is the best answer" (uppercase letter only)
        re.compile(
            rf"(?<![\w(])(?P<open>\()?(?P<letter>{cls})(?(open)\))[ \t]+"
            r"(?i:is[ \t]+(?:the[ \t]+)?(?:correct|right|best)\b)"
        ),
    )


@lru_cache(maxsize=16)
def _lone_letter(letters: str) -> re.Pattern[str]:
    cls = f"[{letters}]"
    return re.compile(
        rf"(?<![\w.])[(\[](?P<a>{cls})[)\]]"  # "(C)" or "[C]"
        rf"|(?<![\w.'(\[-])(?P<b>{cls})[).](?!\w)"  # "C)" or "C." at a word boundary, not "SS-B)"
        rf"|\*\*(?P<c>{cls})\*\*"  # "**C**"
        rf"|^[ \t]*(?P<d>{cls})[ \t]*$",  # "C" alone on a line
        re.MULTILINE,
    )


def _letter_counts(text: str, m: re.Match[str]) -> bool:
    """False for a bare article-like letter followed by a word ("Answer: A patient ...")."""
    groups = m.groupdict()
    if groups.get("open") or groups.get("box") or m["letter"].upper() not in _ARTICLE_LETTERS:
        return True
    return _CONNECTIVE.match(text, m.end()) is not None


def _strict_choice(text: str, letters: str) -> str | None:
    found = [
        (m.start(), m["letter"].upper())
        for pattern in _choice_patterns(letters)
        for m in pattern.finditer(text)
        if _letter_counts(text, m)
    ]
    return max(found)[1] if found else None


def _squash(text: str) -> str:
    return " ".join(text.casefold().split())


def _relists_option(text: str, m: re.Match[str], letter: str, options: dict[str, str] | None) -> bool:
    """Whether the match opens a line that repeats the option list ("C. <option C's text>")."""
    line_start = text.rfind("\n", 0, m.start()) + 1
    if not options or letter not in options or text[line_start : m.start()].strip():
        return False
    line_rest = text[m.end() :].split("\n", 1)[0]
    return _squash(line_rest).lstrip(" .):").startswith(_squash(options[letter]))


def _lone_choice(text: str, letters: str, options: dict[str, str] | None) -> str | None:
    found = None
    for m in _lone_letter(letters).finditer(text):
        letter = next(g for g in m.groups() if g)
        if not _relists_option(text, m, letter, options):
            found = letter
    return found


def _inside_longer(span: tuple[int, int], owner: str, spans: dict[str, list[tuple[int, int]]]) -> bool:
    """Whether an occurrence of option ``owner`` lies inside a longer occurrence of another option."""
    a, b = span
    return any(s <= a and b <= e and e - s > b - a for k, ss in spans.items() if k != owner for s, e in ss)


def _option_text_choice(text: str, options: dict[str, str]) -> str | None:
    """The one option whose text appears in ``text`` outside any longer option's occurrence."""
    haystack = _squash(text)
    spans: dict[str, list[tuple[int, int]]] = {}
    for letter, option in options.items():
        needle = _squash(option).rstrip(".")
        if needle:
            pattern = rf"(?<!\w){re.escape(needle)}(?!\w)"
            spans[letter] = [m.span() for m in re.finditer(pattern, haystack)]

    seen = [k for k, ss in spans.items() if any(not _inside_longer(span, k, spans) for span in ss)]
    return seen[0] if len(seen) == 1 else None


def extract_choice(
    text: str, options: dict[str, str] | None = None, strict: bool = False, letters: str = "ABCD"
) -> str | None:
    """The chosen option letter (uppercase); see the module docstring for the rules."""
    if not re.fullmatch(r"[A-Z]+", letters):
        raise ValueError(f"letters must be uppercase A-Z, got {letters!r}")
    found = _strict_choice(text, letters)
    if found or strict:
        return found
    found = _lone_choice(text, letters, options)
    if found or not options:
        return found
    return _option_text_choice(text, {k: v for k, v in options.items() if k in letters})


# --- code ------------------------------------------------------------------------------------------

# A code fence anywhere in a line: 3+ backticks, then a language tag only if it ends the line (so the
# text after a stray fence on a code line is kept).
_FENCE = re.compile(r"`{3,}(?:(?P<lang>[\w+.#-]+)(?=[^\S\n]*(?:\n|\Z)))?[^\S\n]*")
# A line that starts top-level code: def, class, import, decorator
_CODE_START = re.compile(r"^(?:(?:async\s+)?def\s|class\s|import\s|from\s+\S+\s+import\s|@)", re.M)
_PYTHON_TAGS = {"", "python", "py", "python3", "py3"}


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def _defines(code: str, name: str) -> bool:
    """Whether ``code`` defines function ``name`` at top level (regex fallback if it doesn't parse)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return re.search(rf"^(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.M) is not None
    return any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name for n in tree.body)


def _trim_to_valid(code: str) -> str:
    """Drop trailing lines (prose after the code) until the program parses; unchanged if never."""
    lines = code.rstrip().split("\n")
    for end in range(len(lines), 0, -1):
        candidate = "\n".join(lines[:end])
        if _parses(candidate):
            return candidate.rstrip() + "\n"
    return code if code.endswith("\n") else code + "\n"


def _indented(line: str) -> bool:
    return line[:1] in (" ", "\t")


def _strip_chatter(text: str) -> str:
    """Unfenced output without the prose before the code: from the first code line on."""
    first = next((line for line in text.split("\n") if line.strip()), "")
    if _indented(first):
        return text  # a body continuation: keep its indentation
    start = _CODE_START.search(text) or re.search(r"^[ \t]+\S", text, re.M)
    return text[start.start() :] if start else text


@dataclass(frozen=True)
class _Segment:
    text: str
    fenced: bool  # inside a fence, by the usual pairing (a tagged fence opens, a bare one toggles)
    tag: str  # the opening fence's language tag ("" if none or not fenced)


def _segments(text: str) -> list[_Segment]:
    """The text cut at every fence, pairing or not: a stray or unbalanced fence cannot swallow code."""
    out: list[_Segment] = []
    start, inside, tag = 0, False, ""
    for m in [*_FENCE.finditer(text), None]:
        piece = text[start : m.start() if m else len(text)]
        if out:  # after a fence: the rest of the fence's line goes
            piece = re.sub(r"\A[ \t]*\n", "", piece)
        if m:  # before a fence: the fence's indentation goes
            piece = re.sub(r"(?<=\n)[ \t]+\Z", "", piece)
        out.append(_Segment(piece, inside, tag if inside else ""))
        if m:
            inside, tag = (True, m["lang"]) if m["lang"] else (not inside, "")
            start = m.end()
    return out


def _defining(segment: str, entry_point: str, fenced: bool) -> str | None:
    """``segment`` (trailing prose dropped; leading prose too if need be) if it parses and defines
    ``entry_point`` at top level, else None. Fenced code is tried whole first (it may open with
    constants); unfenced text is cut from its first code line first (it may open with prose that parses)."""
    variants = (segment, _strip_chatter(segment)) if fenced else (_strip_chatter(segment), segment)
    for variant in variants:
        code = _trim_to_valid(variant)
        if _parses(code) and _defines(code, entry_point):
            return code
    return None


def _select_code(text: str, entry_point: str) -> str:
    """The code part of the output. Candidates: every piece between fences (any tag, empty ones
    skipped), fenced ones first, the last that parses and defines entry_point winning; then the text
    with every fence removed. Failing all, a python block (the last that names entry_point, else the
    first) or the unfenced text, for a body or helpers to join to the prompt."""
    segments = _segments(text)
    fenced = [s for s in segments if s.fenced and s.text.strip()]
    unfenced = [s for s in segments if not s.fenced and s.text.strip()]
    for group in (fenced, unfenced):
        for s in reversed(group):
            if code := _defining(s.text, entry_point, s.fenced):
                return code
    joined = text if len(segments) == 1 else "\n".join(s.text.strip("\n") for s in segments if s.text.strip())
    if code := _defining(joined, entry_point, False):
        return code
    python = [s.text for s in fenced if s.tag.lower() in _PYTHON_TAGS]
    naming = [code for code in python if _defines(code, entry_point)]  # e.g. cut off mid-function
    if python:
        return naming[-1] if naming else python[0]
    return _strip_chatter(joined)


def _prompt_context(code: str, prompt: str, entry_point: str) -> list[str]:
    """The prompt's imports and helper definitions that ``code`` lacks, as source snippets."""
    have = {line.strip() for line in code.split("\n")}
    try:
        tree = ast.parse(prompt)
    except (SyntaxError, ValueError):
        lines = re.findall(r"^(?:import\s.+|from\s+\S+\s+import\s.+)$", prompt, re.M)
        return [line for line in lines if line.strip() not in have]
    context = []
    for node in tree.body:
        source = ast.get_source_segment(prompt, node) or ""
        if isinstance(node, ast.Import | ast.ImportFrom) and source.strip() not in have:
            context.append(source)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name != entry_point:
            if not _defines(code, node.name) and f"class {node.name}" not in code:
                context.append(source)
    return context


def _join_to_prompt(code: str, prompt: str) -> str:
    """A body or helper the model wrote under the prompt's signature."""
    head = prompt if prompt.endswith("\n") else prompt + "\n"
    first = next((line for line in code.split("\n") if line.strip()), "")
    if _indented(first):
        return head + code  # the model continued the function body
    if _CODE_START.match(first):
        return head + "\n\n" + code  # helpers after the prompt's function
    indented = head + textwrap.indent(textwrap.dedent(code), "    ")  # a body that lost its indentation
    return indented if _parses(indented) else head + code


def extract_code(text: str, prompt: str, entry_point: str) -> str:
    """A complete program from a model's output for a code task.

    The code is the last piece of the output, cut at every ``` fence whatever its tag or pairing, that
    parses and defines ``entry_point`` (fenced pieces before unfenced ones; a missing closing fence runs
    to the end; a stray empty fence is skipped); else the output without its fences if that does; else
    the first python block, or the unfenced text cut from its first code line. Code that defines
    ``entry_point`` gets the prompt's imports and helper functions it lacks prepended; anything else
    (an indented body continuation, a body that lost its indentation, helpers only) is joined to the
    prompt. Trailing prose is dropped until the program parses; if it never does, it is returned as is.
    """
    code = _select_code(text, entry_point)
    if _defines(code, entry_point):
        context = _prompt_context(code, prompt, entry_point)
        program = "\n".join(context) + "\n\n" + code if context else code
    else:
        program = _join_to_prompt(code, prompt)
    return _trim_to_valid(program)


# --- both readings at once -------------------------------------------------------------------------


@dataclass(frozen=True)
class Extraction:
    """The strict and the flexible reading of one model output."""

    strict: str | None
    flexible: str | None


def extract(
    text: str, kind: Literal["number", "choice"], options: dict[str, str] | None = None
) -> Extraction:
    """Both readings of ``text`` for a numeric or multiple-choice task."""
    if kind == "number":
        return Extraction(extract_number(text, True), extract_number(text, False))
    if kind == "choice":
        return Extraction(extract_choice(text, options, True), extract_choice(text, options, False))
    raise ValueError(f"answer kind must be 'number' or 'choice', got {kind!r}")
