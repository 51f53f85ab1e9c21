"""The reference LatentMAS's agent prompts, verbatim (quirks and stray spaces included).

Source: Gen-Verse/LatentMAS ``prompts.py`` at commit 1430ad6 (Apache-2.0), the builders
``build_agent_message_{sequential,hierarchical}_latent_mas`` and
``build_agent_messages_{sequential,hierarchical}_text_mas``. The reference picks texts by task; we pick
them by answer kind: number = its gsm8k/aime texts, choice = its arc/gpqa texts (its medqa-only variant
is not used), code = its mbppplus/humaneval texts. Placeholders: ``{question}``, ``{context}`` (TextMAS:
the previous agents' texts). No torch here: configs import this module.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from latentbench.tasks import Example, Task

SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
ROLES = ("planner", "critic", "refiner", "judger")  # the reference's agents, in its order
# How TextMAS labels each agent's text in the next prompts ("[Planner]:\n...").
TEXT_NAMES = {"sequential": {"planner": "Planner", "critic": "Critic", "refiner": "Refiner", "judger": "Judger"},
              "hierarchical": {"planner": "Math Agent", "critic": "Science Agent", "refiner": "Code Agent",
                               "judger": "Task Summrizer"}}

_BOXED = "put the final answer inside \\boxed{YOUR_FINAL_ANSWER}."
_NOW_BOXED = "Now, reason step by step and output the final answer inside \\boxed{YOUR_FINAL_ANSWER}.\n"
_ABCD = "Your final answer must be selected from A,B,C,D. For example \\boxed{A}. Do not add any other contents inside the box.\n"
_FUNC = ("please provide an efficient and self-contained Python function that solves the following problem "
         "in a markdown code block:\n```\nYOUR_PYTHON_CODE\n```.\n")


def _code_example(imports: str, func: str) -> str:
    return ("You must put all python code as self-contained Python function in markdown code blocks. For example "
            f"```python\nimport {imports}\ndef {func}(a, b):\n    return a + b```. "
            "Do not add any other contents inside the markdown code block.")


_MATH_EXAMPLE, _LIB_EXAMPLE = _code_example("math", "add"), _code_example("needed_library", "FUNC_NAME")
_WHO = {"planner": "math agent", "critic": "science agent", "refiner": "code agent", "judger": "task summarizer"}
# Trailing spaces the reference has after "Input Question: {question}" and after "Your response:".
_QPAD, _RPAD = {"critic": "     "}, {"refiner": "       "}
_JUDGER_TAIL = {"number": "\n" + _NOW_BOXED, "choice": _ABCD + "\n" + _NOW_BOXED}

_LATENT_SEQUENTIAL = {
    "planner": "You are a Planner Agent. Given an input question, design a clear, step-by-step plan for how to solve "
               "the question.\n\nQuestion: {question}\n\nYour outlined plan should be concise with a few bulletpoints "
               "for each step. Do not produce the final answer.\nNow output your plan to solve the question below:\n",
    "critic": "\nQuestion: {question}\n\nYou are a Critic Agent to evaluate the correctness of the input plan for the "
              "given question and provide helpful feedback for improving the plan.\nThe plan information is provided "
              "in latent KV representation format. Review the plan and question and output:\n(1) original plan "
              "contents\n(2) constructive feedback on the original plan.\n\nFormat your response as follows:\n"
              "Original Plan: [Copy the provided Planner Agent's plan here]\nFeedback: [Your detailed feedback to "
              "improve the plan here]\n\nNow, output your response below:\n",
    "refiner": "\nQuestion: {question}\n\nYou are a Refiner Agent to provide a refined step-by-step plan for solving the "
               "given question.\nYou are provided with:\n(1) latent-format information: a previous plan with feedback"
               "\n(2) text-format information: the input question you need to solve.\n\nBased on the input, write a "
               "refined and improved plan to solve the question. Make sure your output plan is correct and concise."
               "\n\nNow, output your refined plan below:\n",
}

_TEXT_SEQUENTIAL = {
    "planner": "\nYou are a Planner Agent. Given an input question, design a clear, step-by-step plan for how to solve "
               "the question.\n\n## Input Question:\n{question}\n\nYour outlined plan should be concise with a few "
               "bullet points for each step. Do not produce the final answer.\n\n## Format your response as follows:\n"
               "Planner Agent's Output:\n[Your detailed plan here]\n\nNow output your plan to solve the question below:\n",
    "critic": "\nYou are a Critic Agent. You are provided with:\n(1) the original question, and\n(2) the Planner Agent's "
              "plan in text format.\n\nYour job is to carefully evaluate the correctness and completeness of the plan "
              "and provide helpful feedback.\n\n## Input Question:\n{question}\n\n## Plan from Planner Agent:\n{context}"
              "\n\n## Format your response as follows:\nCritic Agent's Output:\nOriginal Plan: [Copy the provided "
              "Planner Agent's plan here]\nFeedback: [Your detailed feedback to improve the plan here]\n\nNow, output "
              "your response below:\n",
    "refiner": "\nYou are a Refiner Agent. You are provided with:\n(1) the original question, and\n(2) the Planner "
               "Agent's plan together with Critic Agent's feedback in text format.\n\nYour job is to incorporate the "
               "feedback and produce an improved, refined step-by-step plan.\n\n## Input Question:\n{question}\n\n"
               "## Original Plan and Critic Feedback:\n{context}\n\n## Format your response as follows:\nRefiner "
               "Agent's Output:\n[Your refined and improved plan here]\n\nMake sure your output plan is logically "
               "correct, concise, and sufficient to guide final problem solving.\nNow, output your refined plan below:\n",
}


def _latent_judger(kind: str) -> str:
    head = ("\nTarget Question: {question}\n\nYou are a helpful assistant. You are provided with latent information "
            "for reference and a target question to solve." + ("" if kind == "code" else " ") + "\n\nThe latent "
            "information might contain irrelevant contents. Ignore it if it is not helpful for solving the target "
            "question.\n\nYou must reason step-by-step to solve the provided Target Question without outputting "
            "other irrelevant information.\n")
    code = (_MATH_EXAMPLE + "\n\nNow, reason step by step and output the final answer inside ```python\n"
            "YOUR_PYTHON_CODE\n```.\n")
    return head + (code if kind == "code" else _JUDGER_TAIL[kind])


def _text_judger(kind: str) -> str:
    head = ("\nTarget Question: {question}\n\nYou are the final solver agent in a sequential multi-agent system "
            "(planner -> critic -> refiner -> solver).\nYou are provided with the Refiner Agent's plan as reference."
            "\n\nRefined Plan from Previous Agents:\n{context}\n\nThe plan might contain irrelevant or incorrect "
            "contents. Ignore them if they are not helpful for solving the target question.\n\nYou must reason "
            "step-by-step to solve the **provided Target Question** without outputting other irrelevant information.\n")
    code = ("You must put all python code as self-contained Python function(s) in markdown code blocks. For example:"
            "\n```python\nimport math\ndef add(a, b):\n    return a + b\n```\nDo not add any other contents inside "
            "the markdown code block.\n")
    return head + (code if kind == "code" else _JUDGER_TAIL[kind])


def _latent_hierarchical(role: str, kind: str) -> str:
    given = "Given the input question" + (" and responses from previous agents as reference" if role == "judger" else "")
    if kind == "code":
        ask = f"{given}, reason step by step: {_FUNC}" + (
            _LIB_EXAMPLE + " \n    \n" if role == "judger" else _MATH_EXAMPLE + " \n\n")
    else:
        ask = f"{given}, reason step-by-step and {_BOXED}\n" + (_ABCD if kind == "choice" else "") + "\n"
    qpad = "" if kind == "code" else _QPAD.get(role, "")
    return f"\nYou are a {_WHO[role]}. {ask}Input Question: {{question}}{qpad}\n\nYour response:{_RPAD.get(role, '')}\n"


def _text_hierarchical(role: str, kind: str) -> str:
    if kind == "code":
        ask = ("Given the final answer in markdown python code block.\n\n" if role == "judger"
               else _LIB_EXAMPLE + " \n\n")
        qpad = rpad = ""
    else:
        ask = "Given the final answer inside \\boxed{YOUR_FINAL_ANSWER}.\n\n"
        qpad, rpad = _QPAD.get(role, ""), _RPAD.get(role, "")
    context = "Content from Previous Agent:\n{context}\n\n" if role == "judger" else ""
    return f"\nYou are a {_WHO[role]}. {ask}{context}Input Question: {{question}}{qpad}\n\nYour response:{rpad}\n"


def latent_roles(prompt: str, kind: str) -> dict[str, str]:
    """LatentMAS role -> user-message template, for ``prompt`` (sequential|hierarchical) and an answer kind."""
    if prompt == "hierarchical":
        return {role: _latent_hierarchical(role, kind) for role in ROLES}
    return {**_LATENT_SEQUENTIAL, "judger": _latent_judger(kind)}


def text_roles(prompt: str, kind: str) -> dict[str, str]:
    """TextMAS role -> user-message template ({question}, {context})."""
    if prompt == "hierarchical":
        return {role: _text_hierarchical(role, kind) for role in ROLES}
    return {**_TEXT_SEQUENTIAL, "judger": _text_judger(kind)}


def fill(template: str, **values: str) -> str:
    """Put values into ``{name}`` placeholders in one pass (model text may itself hold "{question}")."""
    return re.sub(r"\{(" + "|".join(values) + r")\}", lambda m: values[m[1]], template)


def question_text(task: Task, example: Example) -> str:
    """The question as the reference's loaders give it: the bare problem, options listed below it; code
    tasks keep the card's instruction, as the reference's MBPP+/HumanEval+ questions do."""
    if task.card.answer_kind == "code":
        return task.prompt(example)
    choices = "\n".join(f"{k}. {v}" for k, v in (example.choices or {}).items())
    return f"{example.question}\n\n{choices}" if choices else example.question
