"""Environments: `make_env` builds a gymnasium VectorEnv for Atari, MinAtar or MiniGrid with the
observation / autoreset / task-reward contract of docs/architecture.md. Optional dependencies
are imported lazily, so importing this package needs none of them."""

from __future__ import annotations

from rltransfer.envs.make import make_env
from rltransfer.envs.spec import SUITES, EnvOptionError, EnvSpec, UnknownEnvError, env_spec

__all__ = ["SUITES", "EnvOptionError", "EnvSpec", "UnknownEnvError", "env_spec", "make_env"]
