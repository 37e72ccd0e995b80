"""`http: {ui: false}`: the daemon serves the API and no web dashboard."""

from __future__ import annotations

from tests.test_api import serve


def test_the_dashboard_can_be_turned_off_and_the_api_stays(vq):
    api = serve(vq, jwt_secret="test-secret-for-the-webui-off-test-0123456789", ui=False)
    token = api.token("olga", "operator")
    assert api.call("GET", "/api/jobs/types", token).status == 200
    for path in ("/ui", "/ui/login", "/ui/static/vq.css"):
        reply = api.call("GET", path)
        assert reply.status == 404, path
        assert reply.body["error"]["code"] == "not_found"  # the API's JSON, not a dashboard page
