"""The dashboard language is kept with the account: PUT /api/me/language, GET /api/me."""

from __future__ import annotations


def test_language_is_kept_with_the_account(api, env):
    c = api.login("vera")
    assert c.get("/api/me").json()["language"] is None
    assert c.put("/api/me/language", json={"language": "en"}).json() == {"language": "en"}
    assert api.login("vera").get("/api/me").json()["language"] == "en"  # a new session sees it
    assert env.service.security.users.language("vera") == "en"
    r = c.put("/api/me/language", json={"language": "fr"})
    assert r.status_code == 422 and "language" in r.json()["message"]
    del c.headers["X-CSRF-Token"]
    assert c.put("/api/me/language", json={"language": "ja"}).status_code == 403  # CSRF like any change
    assert env.service.security.users.language("vera") == "en"
