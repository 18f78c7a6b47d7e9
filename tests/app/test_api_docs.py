"""``/docs`` works with no internet: Swagger UI's page references only gonogo itself, and
gonogo serves every file the page loads."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from app.core.settings import load_settings
from app.core.version import package_version
from app.main import create_app

EXPECTED_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


@pytest.fixture
def client(tmp_path: Path) -> httpx.AsyncClient:
    settings = load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'd.db'}", tokens="")
    transport = httpx.ASGITransport(app=create_app(settings))
    return httpx.AsyncClient(transport=transport, base_url="http://gonogo.test")


async def test_docs_page_references_no_outside_host(client: httpx.AsyncClient) -> None:
    async with client:
        page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "SwaggerUIBundle" in page.text
    # Any scheme-qualified or protocol-relative URL would be fetched from elsewhere.
    assert not re.search(r"(https?:)?//[A-Za-z0-9]", page.text), page.text
    assert '"validatorUrl": null' in page.text  # the validator badge is an outside image


async def test_every_file_the_docs_page_loads_is_served(client: httpx.AsyncClient) -> None:
    async with client:
        page = (await client.get("/docs")).text
        urls = re.findall(r'(?:src|href)="([^"]+)"', page) + re.findall(r"url: '([^']+)'", page)
        assert len(urls) >= 4, urls
        for url in urls:
            assert url.startswith("/"), url
            response = await client.get(url)
            assert response.status_code == 200, url
            suffix = Path(url).suffix
            if suffix in EXPECTED_TYPES:
                assert response.headers["content-type"].startswith(EXPECTED_TYPES[suffix]), url
        spec = (await client.get("/openapi.json")).json()
    assert spec["info"]["version"] == package_version()


@pytest.mark.parametrize(
    "path", ["/docs/assets/index.html", "/docs/assets/..%2F..%2Fpyproject.toml", "/redoc"]
)
async def test_only_the_pages_assets_are_served(client: httpx.AsyncClient, path: str) -> None:
    async with client:
        response = await client.get(path)
    assert response.status_code == 404
