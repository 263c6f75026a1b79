"""The e2e tests run the services as processes on the same sandboxed stack as the integration tests."""

from tests.integration.conftest import db, services, stack  # noqa: F401 - fixtures
