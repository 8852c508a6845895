"""Exploration: epsilon-greedy, ez-greedy, Behavior Transfer's flights / extra action, Zeta."""

from rltransfer.explore.base import (
    Explorer,
    ExplorerInputError,
    LengthSampler,
    Selection,
    actor_epsilons,
)
from rltransfer.explore.factory import EXPLORER_KINDS, UnknownExplorerError, make_explorer
from rltransfer.explore.greedy import EpsilonGreedy, EZGreedy
from rltransfer.explore.zeta import DEFAULT_MAX_LENGTH, sample_zeta, zeta_cdf_table, zeta_pmf
from rltransfer.methods.behavior_transfer import BehaviorTransferExplorer

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "EXPLORER_KINDS",
    "BehaviorTransferExplorer",
    "EZGreedy",
    "EpsilonGreedy",
    "Explorer",
    "ExplorerInputError",
    "LengthSampler",
    "Selection",
    "UnknownExplorerError",
    "actor_epsilons",
    "make_explorer",
    "sample_zeta",
    "zeta_cdf_table",
    "zeta_pmf",
]
