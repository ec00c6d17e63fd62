"""A held-out-frames dataset of the real `train_smoke` clips, for the learning check on real faces.

  python benchmarks/real_smoke_data.py --out workdir/real_smoke_data   # then the steps in configs/real_smoke.py

Each clip of `split.json`'s train_smoke list (../shared/real_media/crops256, already 256 px face crops) is cut in
time: its first --train-fraction of frames become the training clip, the rest the test clip of the same identity,
so the test frames are frames the model never saw of faces it did see. The cut is written as a FOMM vox-png tree
(`--out/frames/{train,test}/<clip>#<first>-<last>/`) and imported by `input_pipeline.prepare`.
"""
import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # the package, not benchmarks/input_pipeline.py

DEFAULT_MEDIA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "real_media" / "crops256"


def write_frame_tree(media: pathlib.Path, names: list[str], out: pathlib.Path, train_fraction: float) -> dict:
  """{clip: (train frames, test frames)} after writing each clip's two parts as PNG folders under `out`."""
  from PIL import Image

  from mcc_jax.io.video import read_video
  counts = {}
  for name in names:
    path = media / f"{name}.mp4"
    if not path.is_file():
      raise FileNotFoundError(f"{path} is missing (a train_smoke clip of {media / 'split.json'})")
    frames = read_video(path).frames
    cut = int(round(len(frames) * train_fraction))
    if not 2 <= cut <= len(frames) - 2:
      raise ValueError(f"{name}: {len(frames)} frames cannot be cut at {train_fraction} into two parts of >= 2 frames")
    for split, first, last in (("train", 0, cut - 1), ("test", cut, len(frames) - 1)):
      folder = out / split / f"{name}#{first}-{last}"
      folder.mkdir(parents=True, exist_ok=True)
      for index in range(first, last + 1):
        Image.fromarray(frames[index]).save(folder / f"{index:05d}.png")
    counts[name] = (cut, len(frames) - cut)
  return counts


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", required=True, help="output folder: frames/ (the cut) and data/ (the dataset)")
  parser.add_argument("--media", default=str(DEFAULT_MEDIA), help="the crops256 folder holding split.json")
  parser.add_argument("--train-fraction", type=float, default=0.75, help="leading share of each clip to train on")
  args = parser.parse_args()
  media, out = pathlib.Path(args.media), pathlib.Path(args.out)
  if not (media / "split.json").is_file():
    print(f"error: {media / 'split.json'} not found (pass --media)", file=sys.stderr)
    return 2
  if (out / "frames").exists():
    print(f"error: {out / 'frames'} exists; choose a new --out", file=sys.stderr)
    return 2
  names = json.loads((media / "split.json").read_text())["train_smoke"]
  counts = write_frame_tree(media, names, out / "frames", args.train_fraction)
  from input_pipeline import prepare
  code = prepare.main(["--input", str(out / "frames"), "--out", str(out), "--layout", "vox-png"])
  print(json.dumps({"clips": len(counts), "train_frames": sum(c[0] for c in counts.values()),
                    "test_frames": sum(c[1] for c in counts.values())}))
  return code


if __name__ == "__main__":
  sys.exit(main())
