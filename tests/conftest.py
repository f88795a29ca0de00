from __future__ import annotations

import os

from hypothesis import settings

# CI=... runs the "ci" profile; QATCORE_HYPOTHESIS_PROFILE picks one explicitly
# (e.g. "long" for a soak run before a release).
settings.register_profile("ci", max_examples=500, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=60, deadline=None, print_blob=True)
settings.register_profile("long", max_examples=5000, deadline=None, print_blob=True)
settings.load_profile(
    os.environ.get("QATCORE_HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)
