"""The FastAPI application of the central service: API routers, the web UI, OpenAPI docs.

    app = create_app(service)          # service: ems.central.service.CentralService
    uvicorn.run(app, host="127.0.0.1", port=8080)

Pages: ``/`` (dashboard, login inside), ``/public`` (residents' shelter
page, no login), ``/api/docs`` (OpenAPI, served from the local
swagger-ui-bundle: nothing is fetched from the internet).  Every API
endpoint checks the caller's permission (see ems.central.api.deps); bad
input is answered 422 with the field named in ``detail[].loc`` and in
``message``.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ems.central.api import alarms, audit, auth, commands, earnings, fleet, jma, public

STATIC_DIR = Path(str(files("ems.central") / "static"))

#: Our own pages load nothing but their own files; the OpenAPI page needs its inline starter script.
CSP_APP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
           "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
CSP_DOCS = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; frame-ancestors 'none'")

#: FastAPI's 400 for a request body it cannot decode at all (JSON that is not valid UTF-8 and the like).
FASTAPI_BODY_ERROR = "There was an error parsing the body"


def _field_name(loc: list) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or ".".join(str(p) for p in loc)


def _messages(detail: list) -> str:
    return "; ".join(f"{_field_name(list(d.get('loc', [])))}: {d.get('msg', 'invalid')}" for d in detail)


def create_app(service, manage_lifecycle: bool = True) -> FastAPI:
    """The ASGI app for ``service``; with ``manage_lifecycle`` the app starts and stops the service."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if manage_lifecycle:
            await service.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                await service.stop()

    app = FastAPI(title="Shelter EMS central service",
                  description="Fleet overview, hall history, alarms, VPP dispatch, municipal disaster switch, "
                              "JMA warnings, audit. Units: W, Wh, %, h, JPY/kWh; times ISO 8601 (UTC).",
                  version="1", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json", lifespan=lifespan)
    app.state.service = service
    for module in (auth, fleet, earnings, alarms, commands, jma, audit, public):
        app.include_router(module.router)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{k: v for k, v in err.items() if k in ("loc", "msg", "type")} for err in exc.errors()]
        return JSONResponse({"detail": detail, "message": _messages(detail)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == FASTAPI_BODY_ERROR:
            # A body that is not even text (e.g. not UTF-8): bad input like any other, 422 naming the body.
            detail = [{"loc": ["body"], "msg": "not valid JSON: the body must be UTF-8 JSON", "type": "json_invalid"}]
            return JSONResponse({"detail": detail, "message": _messages(detail)}, status_code=422)
        body = {"detail": exc.detail}
        if exc.status_code == 422 and isinstance(exc.detail, list):
            body["message"] = _messages(exc.detail)
        elif isinstance(exc.detail, str):
            body["message"] = exc.detail
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        path = request.url.path
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = CSP_DOCS if path.startswith("/api/docs") else CSP_APP
        if path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _mount_docs(app)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/public", include_in_schema=False)
    def public_page() -> FileResponse:
        if not service.public_page:
            return HTMLResponse("<h1>Not found</h1>", status_code=404)
        return FileResponse(STATIC_DIR / "public.html", headers={"Cache-Control": "no-cache"})

    return app


def _mount_docs(app: FastAPI) -> None:
    """OpenAPI page with Swagger UI from the swagger-ui-bundle package (no CDN)."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:  # docs page unavailable; /api/openapi.json still is
        return
    app.mount("/api/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/api/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/api/openapi.json", title="Shelter EMS API",
                                   swagger_js_url="/api/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/api/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/api/docs-assets/favicon-32x32.png")
