"""rltransfer: pretrain reinforcement-learning agents and transfer what they learned.

See ``docs/architecture.md`` for the map of the package.
"""

__version__ = "0.1.0"
