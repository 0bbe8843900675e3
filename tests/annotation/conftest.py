from tests.annotation.browser import browser  # noqa: F401 — fixture
from tests.annotation.ls_fixtures import isolated_secrets, ls_server, workflow  # noqa: F401 — fixtures
