"""The served OpenAPI document is a valid OpenAPI 3.1 document (its schemas are pydantic's JSON Schema 2020-12,
with "null" in anyOf, which a 3.0 document may not hold)."""

from __future__ import annotations

from typing import cast

from aiohttp import web
from openapi_spec_validator import OpenAPIV30SpecValidator, OpenAPIV31SpecValidator

from bot.api import add_api_routes, api_document
from bot.engine import EmailEngine


def test_the_document_is_valid_openapi_3_1() -> None:
    document = api_document()
    assert document["openapi"].startswith("3.1")
    errors = [error.message for error in OpenAPIV31SpecValidator(document).iter_errors()]
    assert errors == []


def test_as_3_0_the_same_schemas_would_be_invalid() -> None:
    """Why it is 3.1: the document declared 3.0.3 before, which its own schemas break."""
    document = {**api_document(), "openapi": "3.0.3"}
    assert any(True for _ in OpenAPIV30SpecValidator(document).iter_errors())


def test_the_document_describes_every_route_the_app_serves_and_no_other() -> None:
    """A route added without its document would be invisible to clients and to schemathesis's checks."""
    app = web.Application()
    add_api_routes(app, cast(EmailEngine, None), "token")
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method in ("GET", "POST", "PUT", "DELETE", "PATCH") and route.resource is not None
    } - {("get", "/api/openapi.json")}
    verbs = ("get", "post", "put", "delete", "patch")
    documented = {(m, path) for path, item in api_document()["paths"].items() for m in item if m in verbs}
    assert served == documented
