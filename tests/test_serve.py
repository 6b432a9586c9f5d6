"""Against a real `kbqa serve` process over HTTP."""

import requests


def test_real_server_answers_over_http(server):
    health = requests.get(server + "/api/health", timeout=10)
    assert health.status_code == 200 and health.json()["chunks"] > 0
    r = requests.post(server + "/api/query", json={"question": "What does kube-proxy do?"},
                      timeout=30)
    assert r.status_code == 200
    body = r.json()
    assert body["found"] and any(p["source"].endswith("kube-proxy.md") for p in body["passages"][:3])
    r = requests.post(server + "/api/query", json={"question": ""}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == "empty_question"
    page = requests.get(server + "/", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
