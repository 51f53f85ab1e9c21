"""latentbench_choice: accuracy of multiple-choice answers (letters A-D), read by latentbench's parser.

    import evaluate
    from latentbench.metrics import metric_path

    metric = evaluate.load(metric_path("choice"))
    metric.compute(predictions=["... so the answer is (B)."], references=["B"])
    # {'accuracy_strict': 1.0, 'accuracy_flexible': 1.0}

Each prediction is a model's full output text; each reference the gold letter, one of A, B, C, D
(anything else is refused with ValueError). The letter is read twice, as ``latentbench eval`` reads it
for MedQA and GPQA: strict reads only explicit markers ("The answer is (B)", "Answer: B",
"(B) is correct", ``\\boxed{B}``); flexible falls back to the last lone letter ("(C)", "C.", a line
holding only "C"). Pass ``options=[{"A": "...", "B": "...", ...}, ...]`` (one dict per prediction) to
let flexible also accept the one option whose text the output names. The rules:
``latentbench.tasks.answers``.
"""

from __future__ import annotations

import datasets
import evaluate

from latentbench.metrics import text_accuracy

_KWARGS = """
Args:
    predictions (list of str): model outputs.
    references (list of str): gold letters, A-D.
    options (list of dict, optional): each question's options, letter -> text.
Returns:
    accuracy_strict (float): share read correctly from an explicit answer marker.
    accuracy_flexible (float): share correct when falling back to a lone letter or an option's text.
"""


class LatentbenchChoice(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__ or "", citation="", inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions: list[str], references: list[str],
                 options: list[dict[str, str] | None] | None = None) -> dict[str, float]:
        return text_accuracy("choice", predictions, references, options)
