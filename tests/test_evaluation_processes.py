"""The pieces of a multi-process evaluation that run in one process: partial sums and FID features combined, and
the per-process per_clip tables merged back into task order."""
import csv

import numpy as np

from mcc_jax.evaluation import processes, report
from mcc_jax.evaluation.pairs import ClipTask
from mcc_jax.evaluation.runner import ClipResult, _Accumulator

NAMES = ("l1", "psnr", "fid")


def _clip(name: str, l1, psnr) -> ClipResult:
  frames = np.zeros((len(l1), 4, 4, 3), np.uint8)
  task = ClipTask(name=name, source_ref=name, driving_ref=name, source=frames[0], driving=frames, fps=25.0)
  return ClipResult(task, {"l1": np.asarray(l1, np.float64), "psnr": np.asarray(psnr, np.float64)})


def test_parts_combine_to_the_whole(tmp_path):
  clips = [_clip("a", [0.1, 0.2], [20.0, np.nan]), _clip("b", [0.3], [25.0]), _clip("c", [0.5, 0.7], [30.0, 31.0])]
  features = [np.random.default_rng(i).normal(size=(len(c.task.driving), 2048)).astype(np.float32)
              for i, c in enumerate(clips)]
  whole, first, second = _Accumulator(), _Accumulator(), _Accumulator()
  for index, (clip, feature) in enumerate(zip(clips, features)):
    for accumulator in (whole, first if index % 2 == 0 else second):
      accumulator.add(clip)
      accumulator.result_features.append(feature)
  parts = [first.part(NAMES, 2, 4), second.part(NAMES, 1, 1)]
  assert processes.combine(tmp_path, parts[0])[0].keys() == parts[0].keys()  # one process: its own part back
  assert not list(tmp_path.iterdir())
  clips_frames = first.combine_parts(NAMES, parts)
  assert clips_frames == (3, 5)
  assert first.counts == whole.counts == {"l1": 5, "psnr": 4}
  for name in ("l1", "psnr"):
    np.testing.assert_allclose(first.sums[name], whole.sums[name], rtol=1e-15)
  np.testing.assert_array_equal(np.concatenate(first.result_features),
                                np.concatenate([features[0], features[2], features[1]]))


def test_clip_tables_merge_in_task_order(tmp_path):
  clips = [_clip(name, [0.1 * i], [20.0 + i]) for i, name in enumerate("abcde")]
  tables = [report.ClipTable(tmp_path, ("l1", "psnr"), part=p) for p in range(2)]
  for index, clip in enumerate(clips):  # process p evaluated tasks p, p + 2, ...
    tables[index % 2].add(clip)
  for table in tables:
    table.close()
  merged = report.merge_clip_tables(tmp_path, 2)
  with open(merged, newline="") as f:
    rows = list(csv.DictReader(f))
  assert [row["clip"] for row in rows] == list("abcde")
  assert [float(row["psnr"]) for row in rows] == [20.0, 21.0, 22.0, 23.0, 24.0]
  assert sorted(p.name for p in tmp_path.iterdir()) == [report.CLIPS_FILE]
