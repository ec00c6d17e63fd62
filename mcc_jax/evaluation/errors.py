"""The error a metric raises when its pretrained weights are not available."""


class MissingWeightsError(FileNotFoundError):
  """A metric's weights are missing. `hint` says which file or flag to pass; the evaluation job skips the metric
  and prints that hint in one line."""

  def __init__(self, metric: str, hint: str):
    super().__init__(f"{metric}: weights not available; {hint}")
    self.metric = metric
    self.hint = hint
