"""The role agents of ``gcache``: a role set per domain (G-Designer's roles, our wording), the prior role
adjacency the GCN propagates over, and each role's turn. The decision node writes the answer with the
reference LatentMAS judger's prompt (``methods/prompts.py``). No torch here."""

from __future__ import annotations

ROLE_PROMPTS: dict[str, str] = {
    # math
    "math solver": "You are a math solver. Solve the problem step by step, using the hints of other agents "
                   "above if they help.",
    "mathematical analyst": "You are a mathematical analyst. Analyse the problem: name the quantities, how they "
                            "relate, and the steps that lead to the answer.",
    "programming expert": "You are a programming expert. Work out how a short Python program would compute the "
                          "answer, and what it would print.",
    "inspector": "You are an inspector. Check the reasoning of the other agents above for mistakes in logic and "
                 "arithmetic, and say what the correct result is.",
    # code
    "project manager": "You are a project manager. Break the task into parts: the function's signature, inputs, "
                       "outputs and edge cases.",
    "algorithm designer": "You are an algorithm designer. Choose an algorithm and data structures for the task and "
                          "describe them step by step.",
    "test analyst": "You are a test analyst. List test cases, edge cases included, and the expected outputs.",
    "bug fixer": "You are a bug fixer. Look for bugs in the approaches above and say how to fix them.",
    # science / medicine
    "domain expert": "You are a domain expert. Recall the facts and principles the question depends on.",
    "critic": "You are a critic. Examine each option and the reasoning above; point out errors and weak arguments.",
    "reasoner": "You are a careful reasoner. Reason step by step to the best option.",
    "fact checker": "You are a fact checker. Verify the claims made so far against what you know.",
}

ROLE_SETS: dict[str, tuple[str, ...]] = {  # answer kind -> roles, cycled over the agents
    "number": ("math solver", "mathematical analyst", "programming expert", "inspector"),
    "code": ("project manager", "algorithm designer", "programming expert", "test analyst", "bug fixer"),
    "choice": ("domain expert", "reasoner", "critic", "fact checker"),
}

# The prior adjacency (undirected role pairs) the GCN propagates over: who naturally talks to whom.
PRIOR_PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "number": (("math solver", "mathematical analyst"), ("mathematical analyst", "programming expert"),
               ("programming expert", "inspector"), ("inspector", "math solver")),
    "code": (("project manager", "algorithm designer"), ("algorithm designer", "programming expert"),
             ("programming expert", "test analyst"), ("test analyst", "bug fixer"), ("bug fixer", "programming expert")),
    "choice": (("domain expert", "reasoner"), ("reasoner", "critic"), ("critic", "fact checker"),
               ("fact checker", "domain expert")),
}


def role_names(agents: int, answer_kind: str, override: str = "") -> list[str]:
    """Agent i's role: ``roles[i % len(roles)]`` from the override (comma-separated) or the domain's set."""
    roles = tuple(r.strip() for r in override.split(",") if r.strip()) or ROLE_SETS[answer_kind]
    return [roles[i % len(roles)] for i in range(agents)]


def prior_adjacency(roles: list[str], answer_kind: str) -> list[tuple[int, int]]:
    """Directed agent pairs (both directions) whose roles the prior links; agents of one role link too."""
    pairs = {frozenset(p) for p in PRIOR_PAIRS.get(answer_kind, ())}
    return [(i, j) for i, a in enumerate(roles) for j, b in enumerate(roles)
            if i != j and (a == b or frozenset((a, b)) in pairs)]


def role_turn(role: str, question: str) -> str:
    """The user message of an agent's turn (an unknown role name is its own description)."""
    return f"{ROLE_PROMPTS.get(role, f'You are the {role}.')}\n\nQuestion: {question}"
