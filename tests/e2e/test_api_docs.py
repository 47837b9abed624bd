"""`/docs` and `/redoc` of a real `loyalty api` load nothing from another host: every script,
style sheet and icon they name is served by the API itself."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.e2e.api_server import api_process

# What each page loads: src="...", href="...", Swagger UI's `url: '...'`, ReDoc's spec-url="...".
REFERENCE = re.compile(r"""(?:src|href|spec-url)="([^"]+)"|url: '([^']+)'""")
CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
    ".json": ("application/json",),
}


@pytest.mark.parametrize(
    "page, expected",
    [
        (
            "/docs",
            [
                "/docs/assets/swagger-ui.css",
                "/docs/assets/favicon.png",
                "/docs/assets/swagger-ui-bundle.js",
                "/openapi.json",
            ],
        ),
        ("/redoc", ["/docs/assets/favicon.png", "/openapi.json", "/docs/assets/redoc.standalone.js"]),
    ],
)
def test_documentation_page_and_everything_it_loads_come_from_the_api(page, expected, env, tmp_path):
    with api_process(env, tmp_path / "api.log") as url:
        response = httpx.get(f"{url}{page}", timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        html = response.text
        # No other host, named or protocol-relative.
        assert re.search(r"(https?:)?//", html) is None
        references = [a or b for a, b in REFERENCE.findall(html)]
        assert references == expected
        bodies = {}
        for path in references:
            asset = httpx.get(f"{url}{path}", timeout=10)
            assert asset.status_code == 200, path
            suffix = path[path.rindex(".") :]
            assert asset.headers["content-type"].split(";")[0] in CONTENT_TYPES[suffix], path
            bodies[path] = asset.content
    # The scripts are the real ones: they define what the page calls.
    if page == "/docs":
        assert b"SwaggerUIBundle" in bodies["/docs/assets/swagger-ui-bundle.js"]
    else:
        assert b"Redoc" in bodies["/docs/assets/redoc.standalone.js"]
    assert bodies["/docs/assets/favicon.png"].startswith(b"\x89PNG")
