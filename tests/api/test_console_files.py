"""The console's static files through the real app: the page needs no key, scripts come only from /ui, nothing else is served."""

from __future__ import annotations

import re


def test_the_page_and_its_modules_are_served_without_a_key_under_a_strict_policy(api):
    page = api.get("/ui", headers={"Authorization": ""})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    referenced = re.findall(r'(?:src|href)="/ui/([\w.]+)"', page.text)
    imported = {name for module in ("console.js",) for name in re.findall(r'from "\./([\w.]+)"', api.get(f"/ui/{module}").text)}
    assert {"console.js", "console.css"} <= set(referenced) and imported == {"api.js", "chart.js"}
    for name in {*referenced, *imported}:
        asset = api.get(f"/ui/{name}", headers={"Authorization": ""})
        assert asset.status_code == 200 and asset.headers["content-type"].startswith("text/javascript" if name.endswith(".js") else "text/css"), name


def test_only_the_console_files_are_served(api):
    for name in ("index.html", "..%2Fmain.py", "nothing.js"):
        assert api.get(f"/ui/{name}").status_code == 404, name
    assert "/ui" not in api.get("/openapi.json").json()["paths"]
