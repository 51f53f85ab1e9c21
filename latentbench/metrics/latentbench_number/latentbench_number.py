"""latentbench_number: accuracy of numeric answers, read by latentbench's own parser.

    import evaluate
    from latentbench.metrics import metric_path

    metric = evaluate.load(metric_path("number"))
    metric.compute(predictions=["2 + 3 = 5. The answer is 5."], references=["5"])
    # {'accuracy_strict': 1.0, 'accuracy_flexible': 1.0}

Each prediction is a model's full output text; each reference the gold number as text ("42", "-3.5",
"1,000", "3/4"). The answer is read twice, as ``latentbench eval`` reads it for GSM8K: strict reads only
explicit markers (``#### n``, ``\\boxed{n}``, "The answer is n", "Answer: n"); flexible falls back to
the last number in the text. A reading matches the gold when the values agree within a relative 1e-6.
The rules: ``latentbench.tasks.answers``. A reference that holds no number is refused (ValueError).
"""

from __future__ import annotations

import datasets
import evaluate

from latentbench.metrics import text_accuracy

_KWARGS = """
Args:
    predictions (list of str): model outputs.
    references (list of str): gold numbers.
Returns:
    accuracy_strict (float): share read correctly from an explicit answer marker.
    accuracy_flexible (float): share correct when falling back to the last number.
"""


class LatentbenchNumber(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__ or "", citation="", inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        return text_accuracy("number", predictions, references)
