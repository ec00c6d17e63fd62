"""Experiment configs: each file's `get_config(arg)` returns an ml_collections.ConfigDict."""
import importlib.util
import pathlib

_PROJECT = pathlib.Path(__file__).resolve().parents[1]


def load_config_file(spec: str):
  """`get_config(arg)` of a config file given as 'path/to/config.py' or 'path/to/config.py:arg' (a relative path
  that does not exist from the working directory is tried from the project root)."""
  path, _, arg = str(spec).partition(":")
  file = pathlib.Path(path)
  if not file.is_absolute() and not file.exists():
    file = _PROJECT / file
  if not file.is_file():
    raise FileNotFoundError(f"config file not found: {path}")
  module_spec = importlib.util.spec_from_file_location(f"config_file_{file.stem}", file)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)
