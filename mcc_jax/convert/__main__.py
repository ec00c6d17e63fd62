"""Convert official MCC checkpoints to an mcc_jax checkpoint, or export one back to the official format.

  python -m mcc_jax.convert --net-g net_g_latest.pth --motion-estimator net_motion_estimator_latest.pth --out DIR
  python -m mcc_jax.convert --export DIR --out OFFICIAL_DIR   # writes net_g_latest.pth, net_motion_estimator_latest.pth
"""
import argparse
import pathlib
import sys


def _import(args) -> None:
  from mcc_jax.convert.official import load_official, paper_model_config
  from mcc_jax.model_checkpoint import save_model
  model = load_official(args.net_g, args.motion_estimator, param_key=args.param_key)
  out = save_model(model, paper_model_config(), args.out, metadata={
      "source": "official", "net_g": str(pathlib.Path(args.net_g).absolute()), "net_g_param_key": args.param_key,
      "motion_estimator": str(pathlib.Path(args.motion_estimator).absolute())})
  print(f"wrote {out}")


def _export(args) -> None:
  import torch

  from mcc_jax.convert.state_dict import export_state_dict
  from mcc_jax.model_checkpoint import load_model
  model = load_model(args.export)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  to_torch = lambda sd: {k: torch.from_numpy(v.copy()) for k, v in sd.items()}
  net_g = to_torch(export_state_dict(model.generator))
  torch.save({"params": net_g, "params_ema": net_g}, out / "net_g_latest.pth")
  torch.save({"params": to_torch(export_state_dict(model.motion_estimator))}, out / "net_motion_estimator_latest.pth")
  print(f"wrote {out / 'net_g_latest.pth'} and {out / 'net_motion_estimator_latest.pth'}")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m mcc_jax.convert", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--net-g", help="official net_g_*.pth")
  parser.add_argument("--motion-estimator", help="official net_motion_estimator_*.pth")
  parser.add_argument("--param-key", default="params_ema", help="net_g weights to take (falls back to 'params')")
  parser.add_argument("--export", metavar="DIR", help="an mcc_jax checkpoint to export to the official format")
  parser.add_argument("--out", required=True, help="output directory")
  args = parser.parse_args(argv)
  if args.export:
    if args.net_g or args.motion_estimator:
      parser.error("--export takes no --net-g / --motion-estimator")
    _export(args)
  else:
    if not (args.net_g and args.motion_estimator):
      parser.error("give both --net-g and --motion-estimator (or --export DIR)")
    try:
      _import(args)
    except (FileNotFoundError, KeyError, ValueError, ImportError) as e:
      print(f"error: {e}", file=sys.stderr)
      return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
