"""The training log writer and the interval averages behind its TensorBoard scalars."""
import json

import numpy as np
import pytest

from mcc_jax.training.writer import IntervalAverages, MetricWriter


def test_interval_averages_reset_after_each_report():
  averages = IntervalAverages()
  for value in (1.0, 2.0, 6.0):
    averages.add({"loss": value, "lr": 0.5})
  assert averages.compute_and_reset() == pytest.approx({"loss": 3.0, "lr": 0.5})
  averages.add({"loss": 10.0})
  assert averages.compute_and_reset() == pytest.approx({"loss": 10.0})


def test_writer_files(tmp_path):
  writer = MetricWriter(tmp_path)
  writer.write_hparams({"train.base_lr": 2e-4})
  writer.write_jsonl(1, {"loss": 0.5})
  writer.write_jsonl(2, {"loss": 0.25})
  writer.write_scalars(2, {"loss": 0.375})
  writer.write_images(2, {"samples": np.zeros((8, 16, 3), np.uint8)})
  writer.close()
  lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert lines == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25}]
  events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  assert len(events) == 1 and events[0].stat().st_size > 100


def test_disabled_writer_writes_nothing(tmp_path):
  writer = MetricWriter(tmp_path, enabled=False)
  writer.write_jsonl(1, {"loss": 0.5})
  writer.write_scalars(1, {"loss": 0.5})
  writer.close()
  assert list(tmp_path.iterdir()) == []
