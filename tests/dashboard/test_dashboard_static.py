"""The dashboard's files are served with the right types, every module it imports exists, and the
API routes around it are untouched."""
import re

from app.dashboard.endpoints import STATIC_DIR

JS_TYPES = ("text/javascript", "application/javascript")


def test_index_is_html_and_loads_its_assets(client):
    res = client.get("/")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in res.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="(dashboard/static/[^"]+)"', res.text)
    assert {"dashboard/static/app.css", "dashboard/static/js/app.js"} <= set(assets)
    for asset in assets:
        got = client.get("/" + asset)
        assert got.status_code == 200, asset
        want = "text/css" if asset.endswith(".css") else JS_TYPES
        assert got.headers["content-type"].startswith(want), (asset, got.headers["content-type"])
        assert got.headers["x-content-type-options"] == "nosniff"


def test_every_module_import_resolves_to_a_served_file(client):
    """A missing or misspelt ES module would leave the page blank: follow every import."""
    seen, todo = set(), ["js/app.js"]
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        res = client.get(f"/dashboard/static/{rel}")
        assert res.status_code == 200, rel
        assert res.headers["content-type"].startswith(JS_TYPES), rel
        for target in re.findall(r'^import .* from "(\.{1,2}/[^"]+)";$', res.text, re.M):
            todo.append(_join(rel, target))
    on_disk = {str(p.relative_to(STATIC_DIR)) for p in STATIC_DIR.rglob("*.js")}
    assert seen == on_disk  # every module is reachable from app.js, none is dead


def _join(rel: str, target: str) -> str:
    parts = rel.split("/")[:-1]
    for piece in target.split("/"):
        if piece == "..":
            parts.pop()
        elif piece != ".":
            parts.append(piece)
    return "/".join(parts)


def test_api_and_operations_routes_are_not_shadowed(client):
    assert client.get("/v1/datasets").json()["object"] == "list"
    assert client.get("/v1/jobs/job_missing").json()["error"]["code"] == "not_found"
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/" not in spec["paths"] and not any(p.startswith("/dashboard") for p in spec["paths"])
    missing = client.get("/dashboard/static/nope.js")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
