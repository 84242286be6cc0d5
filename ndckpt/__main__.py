"""``python -m ndckpt``: the same command as the ``ndckpt`` console script."""

from .cli import main

raise SystemExit(main())
