"""The ``ndckpt demo`` job and the simulation it checkpoints; not part of the library core.

:class:`GrayScott` is a small but real simulation (2-D Gray-Scott reaction-diffusion)
whose state mixes dtypes the way simulation checkpoints do; :class:`StateTree` is
the type of its state. :func:`run` is ``ndckpt demo``: checkpoint the simulation,
kill it with SIGKILL part-way, resume it, and check the result bit for bit.

>>> from ndckpt.demo import GrayScott
>>> sim = GrayScott(32, seed=1)
>>> sim.step(5)
>>> again = GrayScott.from_state(sim.state(copy=True))
>>> sim.step(3); again.step(3)
>>> bool((sim.u == again.u).all())
True

The library (``ndckpt``) never imports this package; the command line imports it only
for ``ndckpt demo``.
"""

from __future__ import annotations

from .job import CHECKPOINT_STYLES, add_arguments, checkpoint_path, latest_checkpoint, run
from .model import GrayScott, StateTree

__all__ = [
    "CHECKPOINT_STYLES",
    "GrayScott",
    "StateTree",
    "add_arguments",
    "checkpoint_path",
    "latest_checkpoint",
    "run",
]
