"""An operator may run a sweep as of another day, but only a day the platform could have seen:
a day far away is refused with a clear answer, where it used to overflow the sweep's date
arithmetic into a 500 (found by schemathesis: POST /operations/certificate-expiry?as_of=0001-01-01)."""

from __future__ import annotations

import pytest

from tests.support.services import unstarted_service

OPERATOR = {"Authorization": "Bearer development-only-operator-token"}
SWEEPS = [
    ("enrollment", "/operator/expiry-sweep"),
    ("enrollment", "/operator/certificate-retention-sweep"),
    ("insurance", "/operations/certificate-renewal"),
    ("insurance", "/operations/certificate-expiry"),
    ("benefits", "/operations/opt-out-sweep"),
]


@pytest.mark.parametrize(("service", "path"), SWEEPS)
async def test_a_sweep_as_of_a_day_out_of_range_is_refused_with_the_range(settings_for, service, path):
    async with unstarted_service(service, settings_for(service), **OPERATOR) as http:
        for day in ("0001-01-01", "2015-10-04", "2200-01-01", "9999-12-31"):
            answer = await http.post(path, params={"as_of": day})
            assert answer.status_code == 422, (day, answer.text)
            assert "from 2015-10-05 (when the first numbers were notified) to 2199-12-31" in answer.text, day
