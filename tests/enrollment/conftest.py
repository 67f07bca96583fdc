from __future__ import annotations

import pytest

from tests.enrollment.support import running_enrollment


@pytest.fixture
async def enrollment(servers, settings_for):
    async with running_enrollment(servers, settings_for("enrollment")) as running:
        yield running
