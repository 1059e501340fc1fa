"""Property-based fuzzing of the whole central API (schemathesis, in-process ASGI, no network).

Every operation of /api/openapi.json gets schemathesis' explicit examples,
its coverage phase (boundary and just-out-of-bounds values, missing and
wrong-typed fields, each parameter in turn) and generated requests, valid
and invalid, once anonymous and once logged in as admin (session cookie
and CSRF header).  A case fails on any 5xx, on any response the schema
does not declare (status code, content type, body), and on invalid input
that is accepted.

Bounded and repeatable for CI: MAX_EXAMPLES generated requests per
operation and identity (the coverage phase is a fixed list), derandomized
(a fixed seed), no example database.  The operations are read from the
app's own schema at collection time (it needs no service), so a new route
is fuzzed without touching this file; the requests go to an app over a
test service made per module.
"""

from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the 'test' extra")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from ems.central.app import create_app  # noqa: E402
from ems.central.ratelimit import LoginLimiter  # noqa: E402
from tests.central.conftest import feed_fleet, make_env  # noqa: E402

#: Generated requests per operation and identity (EMS_FUZZ_EXAMPLES=500 for a deeper run by hand).
MAX_EXAMPLES = int(os.environ.get("EMS_FUZZ_EXAMPLES", "40"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]
FUZZ_SETTINGS = settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
                         suppress_health_check=list(HealthCheck), print_blob=False)

schema = schemathesis.openapi.from_dict(create_app(None, manage_lifecycle=False).openapi())
schema.config.seed = 20240611
# Random hall ids would all be 404: the hall routes are fuzzed on a real hall (unknown ones are tested elsewhere).
schema.config.update(parameters={"path.site_id": "hall-01"})


class Admin:
    """An admin session for the fuzzer: cookie and CSRF header, renewed after the fuzzer logs it out."""

    def __init__(self, app, env):
        self.app, self.env = app, env
        self.renew()

    def renew(self) -> None:
        from fastapi.testclient import TestClient

        with TestClient(self.app) as c:
            r = c.post("/api/login", json={"username": "ada", "password": self.env.passwords["ada"]})
            assert r.status_code == 200, r.text
            self.cookies = dict(c.cookies)
            self.headers = {"X-CSRF-Token": r.json()["csrf_token"]}


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory, fleet):
    env = make_env(tmp_path_factory.mktemp("fuzz"), fleet)
    feed_fleet(env.store, fleet)
    # The fuzzer fails logins by the dozen from one address: no throttle delay here (tested elsewhere).
    env.service.security.limiter = LoginLimiter(max_failures=3, lockout_s=60, throttle_delay_s=0)
    return env


@pytest.fixture(scope="module")
def fuzz_app(fuzz_env):
    return create_app(fuzz_env.service, manage_lifecycle=False)


@pytest.fixture(scope="module")
def admin(fuzz_app, fuzz_env):
    return Admin(fuzz_app, fuzz_env)


@schema.parametrize()
@FUZZ_SETTINGS
def test_fuzz_anonymous(case, fuzz_app):
    response = case.call(app=fuzz_app)
    case.validate_response(response, checks=CHECKS)


@schema.parametrize()
@FUZZ_SETTINGS
def test_fuzz_as_admin(case, fuzz_app, admin):
    response = case.call(app=fuzz_app, headers=admin.headers, cookies=admin.cookies)
    if case.path == "/api/logout" and response.status_code == 200:
        admin.renew()
    case.validate_response(response, checks=CHECKS, headers=admin.headers)
