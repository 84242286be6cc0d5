"""Shared pytest configuration: hypothesis profiles.

Two profiles are registered:

- ``dev``: random exploration with the example database, for local runs;
- ``ci``: ``derandomize=True`` so a CI run is reproducible, no database.

Both use ``deadline=None`` (the machine is a noisy 2-core VM). The profile is
chosen by ``$HYPOTHESIS_PROFILE``; when that is unset it is ``ci`` if ``$CI``
is set and ``dev`` otherwise. Example counts are set per test with
``@settings(max_examples=...)`` so the whole suite stays fast.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow],
}

settings.register_profile("dev", **_COMMON)  # type: ignore[arg-type]
settings.register_profile(
    "ci", derandomize=True, database=None, print_blob=True, **_COMMON  # type: ignore[arg-type]
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)
