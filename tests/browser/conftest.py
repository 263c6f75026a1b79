"""The browser tests run the control service as a process on the same sandboxed stack as the
integration tests, and Debian's Chromium (deploy/local/browser.sh) against it."""

from tests.integration.conftest import stack  # noqa: F401 - fixture
