"""A training run's model as an mcc_jax model checkpoint (`model_config.json` + `state/`).

  python -m mcc_jax.export --run workdir/quickstart --config configs/quickstart.py --out models/quickstart

The generator takes the EMA weights (`--raw` for the trained ones), the motion estimator its trained weights and
BatchNorm statistics: the model evaluation scores. The result is what `--config.train.init_from`, `evaluate.py
--checkpoint`, `mcc-animate` and `python -m mcc_jax.convert --export` (to the official .pth layout) read.
"""
import argparse
import pathlib
import sys


def export_run(run, config, out, *, step: int | None = None, use_ema: bool = True) -> pathlib.Path:
  """Write the model of the training run `run` (a workdir, its checkpoints/ or one step folder) at `step` (default:
  the newest) to `out`; `config` is the run's config (for the model's shapes)."""
  from mcc_jax.evaluation.checkpoint_loading import load_for_evaluation
  from mcc_jax.model_checkpoint import save_model
  out = pathlib.Path(out)
  if out.exists() and (not out.is_dir() or any(out.iterdir())):
    raise FileExistsError(f"{out} exists and is not an empty folder")
  loaded = load_for_evaluation(run, config.model, use_ema=use_ema, step=step, dtype="float32")
  return save_model(loaded.model, config.model, out, metadata={
      "source": "training run", "run": loaded.path, "step": loaded.step, "generator": loaded.generator_weights})


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m mcc_jax.export", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--run", required=True, help="the training workdir (or its checkpoints/, or checkpoints/STEP)")
  parser.add_argument("--config", required=True, help="the run's config file, e.g. configs/quickstart.py")
  parser.add_argument("--out", required=True, help="an empty or new folder")
  parser.add_argument("--step", type=int, default=None, help="a checkpoint step (default: the newest)")
  parser.add_argument("--raw", action="store_true", help="the trained generator instead of its EMA")
  args = parser.parse_args(argv)
  from configs import load_config_file
  try:
    config = load_config_file(args.config)
    out = export_run(args.run, config, args.out, step=args.step, use_ema=not args.raw)
  except (FileNotFoundError, FileExistsError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
