"""promtool (Debian's `prometheus` package, installed by deploy/local/promtool.sh from `make
up` and `make test-unit`): missing, the tests that run it fail under CI and are skipped on a
developer's machine that has not run the setup."""

import os
import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def promtool() -> Path:
    found = os.environ.get("KALO_PROMTOOL") or shutil.which("promtool") or "/usr/bin/promtool"
    if os.access(found, os.X_OK):
        return Path(found)
    message = f"promtool missing ({found}): `make up` installs it (deploy/local/promtool.sh)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
