from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from rltransfer.core.metrics import MetricsLogger
from rltransfer.core.run import RunResult, run_to_completion


class FakeEnvs:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeTrainer:
    """Records what run_to_completion calls, in order."""

    def __init__(self, run_dir: Path, *, resume_at: int | None = None,
                 fail: bool = False) -> None:
        self.run_dir = run_dir
        self.env_steps = 0
        self.num_updates = 0
        self.last_eval_return = float("nan")
        self.envs = FakeEnvs()
        self.calls: list[str] = []
        self.resume_at = resume_at
        self.fail = fail

    def try_resume(self) -> bool:
        self.calls.append("resume")
        if self.resume_at is None:
            return False
        self.env_steps = self.resume_at
        return True

    def _loop(self, logger: MetricsLogger) -> None:
        self.calls.append("loop")
        if self.fail:
            raise FloatingPointError("NaN loss")
        self.env_steps, self.num_updates = 100, 25
        logger.log("train", self.env_steps, loss=1.0)

    def evaluate(self, logger: MetricsLogger) -> float:
        self.calls.append("evaluate")
        self.last_eval_return = 0.5
        return 0.5

    def save(self, final: bool = False) -> Path:
        self.calls.append("save final" if final else "save")
        if final:
            (self.run_dir / "final").mkdir(parents=True, exist_ok=True)
            (self.run_dir / "final" / "meta.json").write_text(json.dumps(
                {"env_steps": self.env_steps, "num_updates": self.num_updates,
                 "final_return_mean": self.last_eval_return}))
        return self.run_dir


def test_fresh_run_then_finished_run_returns_the_recorded_result(tmp_path: Path) -> None:
    trainer = FakeTrainer(tmp_path)
    result = run_to_completion(trainer, tensorboard=False)
    assert trainer.calls == ["resume", "loop", "evaluate", "save", "save final"]
    assert trainer.envs.closed
    assert (result.env_steps, result.num_updates, result.final_return_mean) == (100, 25, 0.5)
    again = FakeTrainer(tmp_path)
    assert run_to_completion(again, tensorboard=False) == RunResult(tmp_path, 100, 25, 0.5, 0.0)
    assert again.calls == [] and again.envs.closed  # no training, envs still closed


def test_resume_truncates_metrics_after_the_checkpoint(tmp_path: Path) -> None:
    logger = MetricsLogger(tmp_path, tensorboard=False)
    for step in (40, 80, 120):  # 120 was logged after the checkpoint at 80
        logger.log("train", step, loss=0.0)
    logger.close()
    trainer = FakeTrainer(tmp_path, resume_at=80)
    run_to_completion(trainer, tensorboard=False)
    steps = [json.loads(line)["env_steps"]
             for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps[:2] == [40, 80] and 120 not in steps[:3]


def test_a_failing_loop_still_closes_the_envs(tmp_path: Path) -> None:
    trainer = FakeTrainer(tmp_path, fail=True)
    with pytest.raises(FloatingPointError, match="NaN"):
        run_to_completion(trainer, tensorboard=False)
    assert trainer.envs.closed and trainer.calls == ["resume", "loop"]
    assert not (tmp_path / "final").exists()


# --------------------------------------------------------------------------------------------
# A run that fails before it starts writes nothing to its run directory (issue 10, item 12):
# the corrected command then runs in the same directory instead of being refused.


def _tiny_r2d2(run_dir: Path, **changes: object) -> object:
    from rltransfer.agents.r2d2.config import R2D2Config, TrainConfig

    cfg = TrainConfig(
        env_id="MiniGrid-Empty-5x5-v0", num_envs=2, total_env_steps=40,
        learning_starts_env_steps=20, eval_every_env_steps=10**6, eval_episodes=1,
        checkpoint_every_env_steps=10**6, replay_capacity_env_steps=200,
        max_episode_frames=20, tensorboard=False, progress=False, run_dir=str(run_dir),
        agent=R2D2Config(torso="mlp", batch_size=4, feature_dim=8, hidden=8),
    )
    return dataclasses.replace(cfg, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run: a valid prior / init checkpoint."""
    from rltransfer.agents.r2d2.train import train

    run = tmp_path_factory.mktemp("prior") / "pre"
    train(_tiny_r2d2(run))  # type: ignore[arg-type]
    assert (run / "final" / "meta.json").is_file()
    return run


def _left_nothing(run_dir: Path) -> bool:
    return not (run_dir / "config.json").exists() and (
        not run_dir.exists() or not any(run_dir.iterdir()))


@pytest.mark.parametrize("mistake", ["prior", "init", "env"])
def test_r2d2_run_that_fails_to_start_leaves_no_config(
    tmp_path: Path, pretrained: Path, mistake: str
) -> None:
    from rltransfer.agents.r2d2.train import train
    from rltransfer.core.checkpoint import CheckpointError
    from rltransfer.envs import UnknownEnvError

    run = tmp_path / "run"
    good: dict[str, object] = {"env_id": "MiniGrid-Empty-5x5-v0"}
    if mistake == "prior":
        good.update(explore="bt", prior=str(pretrained))
        bad = dict(good, prior=str(tmp_path / "no_such_prior"))
        error: type[Exception] = CheckpointError
    elif mistake == "init":
        good.update(init="full", init_from=str(pretrained))
        garbage = tmp_path / "garbage"
        garbage.mkdir()
        (garbage / "meta.json").write_text("{not json")
        bad = dict(good, init_from=str(garbage))
        error = CheckpointError
    else:
        bad = dict(good, env_id="NoSuchEnv-v0")
        error = UnknownEnvError
    with pytest.raises(error):
        train(_tiny_r2d2(run, **bad))  # type: ignore[arg-type]
    assert _left_nothing(run)
    result = train(_tiny_r2d2(run, **good))  # type: ignore[arg-type]
    assert result.env_steps == 40
    assert (run / "config.json").is_file() and (run / "final" / "meta.json").is_file()


def test_a_conflicting_run_dir_is_still_refused_before_anything_is_built(
    tmp_path: Path, pretrained: Path
) -> None:
    import rltransfer.agents.r2d2.train as train_module
    from rltransfer.core.run_dir import RunConflictError

    def no_env(*args: object, **kwargs: object) -> None:
        raise AssertionError("the env was built before the run dir was checked")

    saved = (pretrained / "config.json").read_text()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "make_env", no_env)
        with pytest.raises(RunConflictError, match="total_env_steps"):
            train_module.Trainer(_tiny_r2d2(pretrained, total_env_steps=80))  # type: ignore[arg-type]
    assert (pretrained / "config.json").read_text() == saved


def test_a_failed_start_closes_the_envs_it_built(tmp_path: Path) -> None:
    import rltransfer.agents.r2d2.train as train_module
    from rltransfer.core.checkpoint import CheckpointError
    from rltransfer.envs import make_env

    built: list[object] = []

    def recording_make_env(*args: object, **kwargs: object) -> object:
        envs = make_env(*args, **kwargs)  # type: ignore[arg-type]
        built.append(envs)
        return envs

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "make_env", recording_make_env)
        with pytest.raises(CheckpointError):
            train_module.Trainer(_tiny_r2d2(  # type: ignore[arg-type]
                tmp_path / "run", explore="bt", prior=str(tmp_path / "missing")))
    assert len(built) == 1
    assert built[0].closed  # type: ignore[attr-defined]


def _pixel_box_factory() -> object:
    import gymnasium as gym
    import numpy as np
    from gymnasium.vector import AutoresetMode

    from rltransfer.envs.wrappers import TaskRewardInfo

    class PixelBoxEnv(gym.Env):  # type: ignore[type-arg]
        """Pixels 3x24x24 (the step count), a 1-D Box action, reward 1 per step, 6 steps."""

        def __init__(self) -> None:
            self.observation_space = gym.spaces.Box(0, 255, (3, 24, 24), np.uint8)
            self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
            self.t = 0

        def reset(self, *, seed: int | None = None, options: object = None
                  ) -> tuple[np.ndarray, dict[str, object]]:
            super().reset(seed=seed)
            self.t = 0
            return np.zeros((3, 24, 24), np.uint8), {}

        def step(self, action: np.ndarray
                 ) -> tuple[np.ndarray, float, bool, bool, dict[str, object]]:
            self.t += 1
            return np.full((3, 24, 24), self.t, np.uint8), 1.0, False, self.t >= 6, {}

    def build(num_envs: int, seed: int) -> object:
        env = gym.vector.SyncVectorEnv([PixelBoxEnv] * num_envs,
                                       autoreset_mode=AutoresetMode.NEXT_STEP)
        return TaskRewardInfo(env, reward_free=False)

    return build


def test_sac_run_with_a_bad_init_encoder_leaves_no_config(tmp_path: Path) -> None:
    from rltransfer.agents.sac.config import SACConfig, SACTrainConfig
    from rltransfer.agents.sac.train import train_sac
    from rltransfer.methods.encoder_pretraining.transfer import EncoderMismatchError
    from rltransfer.nets.pixel_encoders import PixelEncoderConfig

    run = tmp_path / "sac"
    good = SACTrainConfig(
        env_id="Box", num_envs=1, total_env_steps=12, frame_stack=1, learning_starts_env_steps=6,
        eval_every_env_steps=10**6, eval_episodes=1, checkpoint_every_env_steps=10**6,
        replay_capacity_env_steps=100, progress=False, tensorboard=False, run_dir=str(run),
        agent=SACConfig(hidden_dim=16, batch_size=4),
        encoder=PixelEncoderConfig(num_filters=8, feature_dim=8),
    )
    bad = dataclasses.replace(good, init_encoder_from=str(tmp_path / "no_such_encoder"))
    with pytest.raises(EncoderMismatchError):
        train_sac(bad, env_factory=_pixel_box_factory())  # type: ignore[arg-type]
    assert _left_nothing(run)
    result = train_sac(good, env_factory=_pixel_box_factory())  # type: ignore[arg-type]
    assert result.env_steps == 12 and (run / "config.json").is_file()


def test_efficientzero_run_with_an_unknown_env_leaves_no_config(tmp_path: Path) -> None:
    from rltransfer.agents.efficientzero.train import train_efficientzero
    from rltransfer.envs import UnknownEnvError
    from rltransfer.experiments.efficientzero import ez_small

    run = tmp_path / "ez"
    base = ez_small(run_dir=str(run), total_env_steps=8)
    good = dataclasses.replace(
        base, num_envs=2, mcts=dataclasses.replace(base.mcts, num_simulations=2),
        batch_size=4, learning_starts_env_steps=4, replay_capacity_env_steps=100,
        checkpoint_every_env_steps=10**6, eval_every_env_steps=10**6, eval_episodes=1,
        max_episode_frames=10, progress=False, tensorboard=False,
    )
    with pytest.raises(UnknownEnvError):
        train_efficientzero(dataclasses.replace(good, env_id="MinAtar/NoSuchGame-v1"))
    assert _left_nothing(run)
    assert train_efficientzero(good).env_steps == 8
    assert (run / "config.json").is_file()
