"""`lnlflow review serve`: the review page and its JSON API over the current report (components/review/session.py).

Routes: `GET /` the page; `GET /api/items?offset=&limit=&status=unreviewed|verified|all`; `GET /api/progress`;
`POST /api/corrections` {source_row | file, label, trusted}; `DELETE /api/corrections/<key>` (undo);
`GET /api/samples/<stored row>.png`. Every error is `{"error": "one line"}` (400 for a bad row, class or
parameter). Bound to loopback by default, where the Host header must name it (no DNS rebinding); any other address
needs the token printed at start (`?token=` once, then a cookie, or `Authorization: Bearer`). Writes must be
JSON from the page's own origin, so another site open in the browser cannot post decisions.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import socket
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, JSONResponse, Response

from components.errors import LnlError
from components.review.health import CSS as HEALTH_CSS, health_html

HERE = Path(__file__).parent
COOKIE = "lnlflow_review_token"
CSP = ("default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _error(status: int, message: str) -> JSONResponse:
    lines = str(message).strip().splitlines()
    return JSONResponse({"error": lines[0] if lines else "error"}, status_code=status)


def _guard(token: str | None, allowed_hosts: set[str] | None):
    """The middleware: Host check on loopback, same-origin JSON writes, the token elsewhere."""
    async def guard(request, call_next):
        host = request.headers.get("host", "")
        if allowed_hosts is not None and host not in allowed_hosts:
            return _error(400, f"unexpected Host {host!r}: open the URL lnlflow review serve printed")
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get("origin")
            if origin and urlsplit(origin).netloc != host:
                return _error(403, f"writes come from the review page's own origin, not {origin}")
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/json" \
                    and request.method == "POST":
                return _error(415, "send the decision as JSON (Content-Type: application/json)")
        if token is None:
            return await call_next(request)
        sent = request.query_params.get("token")
        bearer = request.headers.get("authorization", "")
        offered = sent or (bearer[7:].strip() if bearer.lower().startswith("bearer ") else "") \
            or request.cookies.get(COOKIE, "")
        if not (offered and secrets.compare_digest(offered.encode(), token.encode())):
            return _error(401, "this review server needs its token: open the URL it printed at start "
                               "(…/?token=…), or send Authorization: Bearer <token>")
        response = await call_next(request)
        if sent:
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response
    return guard


def create_app(session, *, token: str | None = None, allowed_hosts: set[str] | None = None):
    """The ASGI app over a ReviewSession."""
    app = FastAPI(title="lnlflow review", docs_url=None, redoc_url=None, openapi_url=None)
    app.middleware("http")(_guard(token, allowed_hosts))
    templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    script = (HERE / "static" / "review.js").read_text(encoding="utf-8")

    @app.exception_handler(LnlError)
    async def user_error(_, error: LnlError):
        return _error(400, str(error))

    @app.exception_handler(OSError)
    async def disk_error(_, error: OSError):
        return _error(500, f"{error.filename or 'write'}: {error.strerror or error}")

    @app.exception_handler(RequestValidationError)
    async def bad_request(_, error: RequestValidationError):
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
        return _error(400, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(HTTPException)
    async def http_error(_, error: HTTPException):
        return _error(error.status_code, str(error.detail))

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        config = {"classes": session.classes, "key": session.key, "corrections": session.name}
        text = templates.get_template("review.html").render(
            classes=session.classes, health=Markup(health_html(session.health())), health_css=Markup(HEALTH_CSS),
            config=Markup(json.dumps(config).replace("<", "\\u003c")), progress=session.progress())
        return HTMLResponse(text, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"})

    @app.get("/static/review.js")
    def javascript() -> Response:
        return Response(script, media_type="text/javascript", headers={"Cache-Control": "no-store"})

    @app.get("/api/items")
    def items(offset: int = 0, limit: int = 20, status: str = "unreviewed") -> dict:
        return session.items(offset=offset, limit=limit, status=status)

    @app.get("/api/progress")
    def progress() -> dict:
        return session.progress()

    @app.post("/api/corrections")
    async def decide(request: Request) -> dict:
        try:
            body = json.loads(await request.body() or b"null")
        except (ValueError, UnicodeDecodeError):
            raise LnlError("POST /api/corrections: the body is not JSON") from None
        if not isinstance(body, dict):
            raise LnlError("POST /api/corrections: send one JSON object {source_row or file, label, trusted}")
        return session.decide(body)

    @app.delete("/api/corrections/{key:path}")
    def undo(key: str) -> dict:
        return session.undo(key)

    @app.get("/api/samples/{row}.png")
    def sample(row: int) -> Response:
        try:
            data = session.sample_png(row)
        except KeyError:
            return _error(404, f"stored row {row} is not in the report")
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})

    @app.api_route("/{rest:path}", methods=["GET", "POST", "DELETE", "PUT", "PATCH"])
    def missing(rest: str) -> JSONResponse:
        return _error(404, f"no such page /{rest}")

    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free one); a busy port or an unknown address is one LnlError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as error:
        sock.close()
        raise LnlError(f"cannot listen on {host}:{port} ({error.strerror or error}); pick another --port") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(host: str = "127.0.0.1", port: int = 8765, root: Path = Path(".")) -> None:
    """Serve the review page until Ctrl+C; prints its URL (with the token off loopback) first."""
    import uvicorn

    from components.review.session import ReviewSession

    session = ReviewSession(root)
    loopback = is_loopback(host)
    token = None if loopback else secrets.token_urlsafe(18)
    sock = bind(host, port)
    port = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    names = {shown, "localhost", "127.0.0.1"} if loopback else None
    allowed = {f"{name}:{port}" for name in names} if names else None
    if host in ("0.0.0.0", "::"):
        shown = socket.gethostname()
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    app = create_app(session, token=token, allowed_hosts=allowed)
    print(f"review: serving the {len(session.report)} labels of {session.report.path} at {url}", flush=True)
    print(f"review: every decision is written at once to {session.target} (data.corrections); "
          f"{'anyone with the token in this URL can write it; ' if token else ''}Ctrl+C stops", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn stops gracefully on Ctrl+C, then raises it again
        pass
    print(f"review: stopped; every decision is in {session.target}", flush=True)
