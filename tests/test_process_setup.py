"""Joining a multi-process run (mcc_jax.distributed): from the JAX_* variables, by auto-detection, or not at all."""
import jax
import pytest

from mcc_jax.distributed import ENVIRONMENT, initialize_processes


@pytest.fixture
def calls(monkeypatch):
  recorded = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: recorded.append(kwargs))
  for name in ENVIRONMENT:
    monkeypatch.delenv(name, raising=False)
  return recorded


def test_single_process_joins_nothing(calls):
  initialize_processes(multihost=False)
  assert calls == []


def test_multihost_auto_detects(calls):
  initialize_processes(multihost=True)
  assert calls == [{}]


def test_environment_variables(calls, monkeypatch):
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
  monkeypatch.setenv("JAX_PROCESS_ID", "3")
  initialize_processes(multihost=False)
  assert calls == [{"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}]


def test_a_missing_variable_is_named(calls, monkeypatch):
  monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
  with pytest.raises(ValueError, match="set but not JAX_COORDINATOR_ADDRESS or JAX_PROCESS_ID"):
    initialize_processes(multihost=True)
  assert calls == []
