"""``gcache mode=api|hybrid``: the decision through an OpenAI-compatible chat endpoint (the ``openai`` client).

A KV cache cannot travel to a remote model, so there the agents' work arrives as text: ``api`` hands the
endpoint each local agent's written note (in the graph's order); ``hybrid`` runs everything locally with
caches and asks the endpoint to check and refine the local answer.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from latentbench.errors import UsageError

if TYPE_CHECKING:
    from latentbench.methods.gcache.config import GCacheConfig

API_INSTRUCTION = {
    "number": "Reason step by step and output the final answer inside \\boxed{YOUR_FINAL_ANSWER}.",
    "choice": "Your final answer must be one of the options' letters, inside \\boxed{}, e.g. \\boxed{A}.",
    "code": "Output the final answer as a self-contained Python function in a ```python markdown code block.",
}


def client(cfg: GCacheConfig) -> Any:
    import openai

    return openai.OpenAI(base_url=cfg.api_base, api_key=os.environ.get(cfg.api_key_env) or "none", max_retries=1)


def chat(cfg: GCacheConfig, api: Any, messages: list[dict[str, str]]) -> str:
    """The endpoint's reply (greedy); one line naming the endpoint when it fails."""
    import openai

    try:
        reply = api.chat.completions.create(model=cfg.api_model, messages=messages, max_tokens=cfg.api_max_tokens,
                                            temperature=0.0)
    except openai.OpenAIError as err:
        raise UsageError(f"--api-base {cfg.api_base}: the endpoint failed ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:200]})") from None
    return reply.choices[0].message.content or ""


def api_messages(question: str, answer_kind: str, notes: list[tuple[str, str]]) -> list[dict[str, str]]:
    """mode=api: the question with every agent's note ((role, text), in the graph's order)."""
    shared = "\n\n".join(f"[{role}]\n{text.strip()}" for role, text in notes)
    user = (f"Question: {question}\n\nNotes from other agents (they may be wrong):\n\n{shared}\n\n"
            f"{API_INSTRUCTION[answer_kind]}")
    return [{"role": "user", "content": user}]


def hybrid_messages(question: str, answer_kind: str, local_answer: str) -> list[dict[str, str]]:
    """mode=hybrid: the question and the local graph's answer, to check and refine."""
    user = (f"Question: {question}\n\nA smaller model answered:\n\n{local_answer.strip()}\n\nCheck this answer, fix "
            f"any mistake, and give the final answer. {API_INSTRUCTION[answer_kind]}")
    return [{"role": "user", "content": user}]
