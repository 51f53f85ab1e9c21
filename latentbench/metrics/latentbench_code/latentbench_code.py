"""latentbench_code: pass@1 of code completions, run against HumanEval-style tests in latentbench's sandbox.

    import evaluate
    from latentbench.metrics import metric_path

    metric = evaluate.load(metric_path("code"))
    metric.compute(
        predictions=["```python\\ndef add(a, b):\\n    return a + b\\n```"],
        references=[{"test": "def check(candidate):\\n    assert candidate(2, 3) == 5\\n",
                     "entry_point": "add", "prompt": ""}],
    )
    # {'pass@1': 1.0}

Each prediction is one model output for its problem (one sample per problem, so this is pass@1).
Each reference is a dict with exactly these three keys, named as in a HumanEval record (``evaluate``
refuses other keys, so pass ``{k: row[k] for k in ("test", "entry_point", "prompt")}`` for a row):

- ``test``: code defining ``check(candidate)``, which raises (e.g. a failing assert) when wrong;
- ``entry_point``: the name of the function that is passed to ``check``;
- ``prompt``: the code the model was asked to continue (signature + docstring); "" when the
  completions define the function themselves.

The program is extracted as ``latentbench eval`` does for HumanEval (``extract_code``: fenced blocks,
a bare body joined to the prompt, trailing prose dropped) and run in a separate sandboxed process
(bubblewrap; without it scoring is refused, see docs/sandbox.md). A problem passes when ``check`` returns.
Keyword options: ``workers`` (parallel sandboxes, default 2), ``timeout_s`` (per problem, default 10).
"""

from __future__ import annotations

import datasets
import evaluate

from latentbench.metrics import code_pass_at_1

_KWARGS = """
Args:
    predictions (list of str): model outputs, one per problem.
    references (list of dict): {"test", "entry_point", "prompt"} per problem.
    workers (int, optional): sandboxed processes run in parallel (default 2).
    timeout_s (float, optional): wall-clock limit per problem in seconds (default 10).
Returns:
    pass@1 (float): share of problems whose program passes its check.
"""


class LatentbenchCode(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__ or "", citation="", inputs_description=_KWARGS,
            features=datasets.Features({
                "predictions": datasets.Value("string"),
                "references": {"test": datasets.Value("string"), "entry_point": datasets.Value("string"),
                               "prompt": datasets.Value("string")},
            }),
        )

    def _compute(self, predictions: list[str], references: list[dict[str, str | None]], workers: int = 2,
                 timeout_s: float = 10.0) -> dict[str, float]:
        return code_pass_at_1(predictions, references, workers=workers, timeout_s=timeout_s)
