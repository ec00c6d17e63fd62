"""benchmarks/op_profile.py: name scopes, FLOPs per scope and the trace's attribution, on a small computation."""
import jax
import jax.numpy as jnp
import pytest

from benchmarks import op_profile


@pytest.mark.parametrize("op_name, scope", [
    ("jit(infer)/generator/encoder/ResBlock/conv_general_dilated", "generator/encoder/ResBlock"),
    ("jit(train_step)/transpose(jvp(generator))/decoder/ResBlock/add", "generator/decoder/ResBlock [bwd]"),
    ("jit(train_step)/jvp(jvp(perceptual_loss))/jit(relu)/max", "perceptual_loss"),
    ("jit(infer)/motion_estimator/dense_motion/jit(inv)/jit(solve)/vmap()/while/body/add",
     "motion_estimator/dense_motion"),
    ("jit(infer)/reduce_sum", op_profile.TOP_LEVEL),
    ("", op_profile.TOP_LEVEL),
])
def test_scope_of_hlo_op_names(op_name, scope):
  assert op_profile.scope_of(op_name, drop_last=True) == scope


def test_truncate_keeps_the_backward_mark():
  assert op_profile.truncate("generator/compensation_32/motion_codebook [bwd]", 2) == "generator/compensation_32 [bwd]"
  assert op_profile.truncate(op_profile.TOP_LEVEL, 1) == op_profile.TOP_LEVEL


def _model(kernel, weight, x):
  with jax.named_scope("features"):
    y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  with jax.named_scope("head"):
    return jnp.tanh(y.reshape(y.shape[0], -1) @ weight).sum()


def _inputs():
  keys = jax.random.split(jax.random.key(0), 3)
  kernel = jax.random.normal(keys[0], (3, 3, 4, 8))
  weight = jax.random.normal(keys[1], (16 * 16 * 8, 32))
  x = jax.random.normal(keys[2], (2, 16, 16, 4))
  return kernel, weight, x


def test_scope_flops_counts_convolutions_and_matmuls_per_scope():
  conv = 2.0 * (2 * 16 * 16 * 8) * (3 * 3 * 4)
  matmul = 2.0 * (2 * 32) * (16 * 16 * 8)
  assert op_profile.scope_flops(_model, *_inputs()) == pytest.approx({"features": conv, "head": matmul})

  flops = op_profile.scope_flops(jax.grad(_model, argnums=(0, 1)), *_inputs())
  assert flops["features"] == pytest.approx(conv)
  assert flops["head"] == pytest.approx(matmul)
  # the backward pass: the weight gradients of both, and the conv output's gradient through the matmul
  assert flops["features [bwd]"] == pytest.approx(conv)
  assert flops["head [bwd]"] == pytest.approx(2 * matmul)


def test_profile_attributes_the_trace_to_scopes(tmp_path):
  args = _inputs()
  step = jax.jit(jax.grad(_model, argnums=(0, 1)))
  compiled = step.lower(*args).compile()
  flops = op_profile.scope_flops(step, *args)
  jax.block_until_ready(compiled(*args))
  summary = op_profile.profile_compiled(lambda: compiled(*args), compiled, flops, calls=2, trace_dir=tmp_path,
                                        depth=1, peak_flops_per_s=1e12)
  scopes = {row["scope"]: row for row in summary["scopes"]}
  assert {"features", "head", "features [bwd]", "head [bwd]"} <= set(scopes)
  assert summary["device_ms"] > 0
  assert sum(row["ms"] for row in summary["scopes"]) == pytest.approx(summary["device_ms"])
  assert summary["gflop"] == pytest.approx(sum(flops.values()) / 1e9)
  timed = [row for row in summary["scopes"] if row["ms"] > 0]
  assert any(row["scope"].startswith("features") for row in timed)
  assert all(op["scope"] for op in summary["ops"])


def test_profile_fails_clearly_on_an_empty_trace(tmp_path):
  with pytest.raises(RuntimeError, match="no perfetto_trace"):
    op_profile.trace_events(tmp_path)


def test_trace_events_keep_the_accelerator_where_there_is_one(tmp_path):
  import gzip
  import json
  folder = tmp_path / "plugins" / "profile" / "run"
  folder.mkdir(parents=True)
  events = [{"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/host:CPU"}},
            {"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "/device:GPU:0"}},
            {"ph": "X", "pid": 1, "tid": 1, "name": "fusion.1", "ts": 0, "dur": 5},
            {"ph": "X", "pid": 2, "tid": 7, "name": "loop_fusion_kernel", "ts": 1, "dur": 3,
             "args": {"hlo_op": "fusion.1"}}]
  with gzip.open(folder / "perfetto_trace.json.gz", "wt") as f:
    json.dump({"traceEvents": events}, f)
  kept = op_profile.trace_events(tmp_path)
  assert [e["pid"] for e in kept] == [2]
  instructions = {"fusion.1": {"scope": "generator"}}
  assert op_profile.op_times(kept, instructions) == {"fusion.1": 3}
