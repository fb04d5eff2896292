"""The ASGI app of `refstream serve` (Starlette): routes parse the request, call the front
door or the status reader, and render. Business rules live in `frontdoor.py`."""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request, cookie_parser
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from refstream.rewards.rules import Rules
from refstream.streams.settings import Settings
from refstream.web import pages
from refstream.web.codes import normalise_code
from refstream.web.frontdoor import (
    UTM_MEDIUM_QR,
    VISITOR_COOKIE,
    VISITOR_COOKIE_MAX_AGE_S,
    Clock,
    FrontDoor,
    IssueError,
    is_automated,
    wall_clock_ms,
)
from refstream.web.publishing import EventPublisher, publisher_from_settings
from refstream.web.qr import qr_png, qr_svg
from refstream.web.registry import Registry, StatusHolder
from refstream.web.status import SnapshotUnavailable, read_status

NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
            "X-Robots-Tag": "noindex"}
_MAX_BODY = 16 * 1024
_FOLLOW_PREFIX = "/r/"
_NO_STORE_RAW = [(k.lower().encode(), v.encode()) for k, v in NO_STORE.items()]
_FOLLOW_HEADERS = frozenset({b"user-agent", b"cookie", b"purpose", b"sec-purpose",
                             b"x-purpose", b"x-moz"})


def create_app(settings: Settings, rules: Rules, *, publisher: EventPublisher | None = None,
               clock: Clock = wall_clock_ms) -> FollowedLinks:
    """The whole edge: followed links (`FollowedLinks`) in front of the Starlette routes."""
    registry = Registry(settings.web_registry)
    door = FrontDoor(settings, rules, registry,
                     publisher or publisher_from_settings(settings), clock)
    qr_cache: dict[tuple[str, str], bytes] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await door.publisher.start()
        except Exception as exc:
            door.start_error = exc  # uvicorn only says that the start failed: serve tells why
            raise
        try:
            yield
        finally:
            await door.publisher.stop()
            registry.close()

    # ------------------------------------------------------------------------- QR

    async def qr(request: Request) -> Response:
        code = normalise_code(request.path_params["code"])
        issued = registry.code(code) if code else None
        kind = request.path_params["kind"]
        if issued is None or kind not in ("svg", "png"):
            return Response("no such code", status_code=404, media_type="text/plain")
        key = (issued.code, kind)
        body = qr_cache.get(key)
        if body is None:
            link = door.link(issued, UTM_MEDIUM_QR)
            body = qr_cache[key] = qr_svg(link) if kind == "svg" else qr_png(link)
        return Response(body, media_type="image/svg+xml" if kind == "svg" else "image/png",
                        headers={"Cache-Control": "public, max-age=86400"})

    # ---------------------------------------------------------------- issuing API

    async def _json_body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > _MAX_BODY:
            raise ValueError("request body too large")
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"the body is not JSON: {exc.msg}") from exc
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    def _authorised(request: Request, shop_id: str) -> bool:
        expected = settings.web_api_keys.get(shop_id)
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return (expected is not None and bool(given) and
                hmac.compare_digest(given.encode(), expected.get_secret_value().encode()))

    async def _shop_request(request: Request) -> tuple[dict[str, Any], Response | None]:
        try:
            body = await _json_body(request)
        except ValueError as exc:
            return {}, JSONResponse({"error": str(exc)}, status_code=400)
        shop_id, referrer_id = body.get("shop_id"), body.get("referrer_id")
        if not isinstance(shop_id, str) or not shop_id or not isinstance(referrer_id, str) \
                or not referrer_id:
            return body, JSONResponse({"error": "shop_id and referrer_id (strings) are "
                                                "required"}, status_code=400)
        if not _authorised(request, shop_id):
            return body, JSONResponse(
                {"error": f"missing or wrong API key for shop {shop_id!r}: send "
                          "'Authorization: Bearer <key>' with the shop's key"},
                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return body, None

    def _code_json(issued: Any, new: bool) -> dict[str, Any]:
        return {"code": issued.code, "shop_id": issued.shop_id,
                "campaign_id": issued.campaign_id, "link": door.link(issued),
                "qr_svg": f"{settings.web_public_url.rstrip('/')}/qr/{issued.code}.svg",
                "qr_png": f"{settings.web_public_url.rstrip('/')}/qr/{issued.code}.png",
                "issued_now": new}

    async def issue_code(request: Request) -> Response:
        body, refused = await _shop_request(request)
        if refused is not None:
            return refused
        campaign_id = body.get("campaign_id")
        if campaign_id is not None and not isinstance(campaign_id, str):
            return JSONResponse({"error": "campaign_id must be a string"}, status_code=400)
        try:
            issued, new = await door.issue(body["shop_id"], body["referrer_id"], campaign_id)
        except IssueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        return JSONResponse(_code_json(issued, new), status_code=201 if new else 200)

    async def new_status_link(request: Request) -> Response:
        body, refused = await _shop_request(request)
        if refused is not None:
            return refused
        secret = registry.new_status_secret(body["shop_id"], body["referrer_id"], clock())
        return JSONResponse({"status_url": f"{settings.web_public_url.rstrip('/')}/s/{secret}"},
                            status_code=201, headers=NO_STORE)

    async def revoke_status_links(request: Request) -> Response:
        body, refused = await _shop_request(request)
        if refused is not None:
            return refused
        revoked = registry.revoke_status_secrets(body["shop_id"], body["referrer_id"], clock())
        return JSONResponse({"revoked": revoked})

    # --------------------------------------------------------------- status pages

    def _holder(request: Request) -> StatusHolder | None:
        return registry.status_holder(request.path_params["secret"])

    async def _status(holder: StatusHolder) -> Any:
        codes = registry.codes_of(holder.shop_id, holder.referrer_id)
        return await run_in_threadpool(read_status, settings.web_snapshot, holder.shop_id,
                                       holder.referrer_id, [c.code for c in codes]), codes

    async def status_api(request: Request) -> Response:
        holder = _holder(request)
        if holder is None:
            return JSONResponse({"error": "unknown or revoked status link"}, status_code=404,
                                headers=NO_STORE)
        try:
            status, codes = await _status(holder)
        except SnapshotUnavailable as exc:
            return JSONResponse({"error": str(exc)}, status_code=503, headers=NO_STORE)
        data = status.as_json()
        data["codes"] = [_code_json(c, False) for c in codes]
        return JSONResponse(data, headers=NO_STORE)

    async def status_page(request: Request) -> Response:
        holder = _holder(request)
        if holder is None:
            return HTMLResponse(pages.problem_page(
                "Unknown link", "This status link is not valid (or was replaced by a new one). "
                                "Ask the shop for your current link."),
                status_code=404, headers=NO_STORE)
        try:
            status, codes = await _status(holder)
        except SnapshotUnavailable as exc:
            return HTMLResponse(pages.problem_page("Not available yet", str(exc)),
                                status_code=503, headers=NO_STORE)
        shares = [(c.code, door.link(c), rules.campaign_by_id.get(c.campaign_id or ""),
                   door.referee_discount(c.campaign_id)) for c in codes]
        have = {c.campaign_id for c in codes}
        secret = request.path_params["secret"]
        share_pages = [(f"/s/{secret}/share/{c.id}", f"campaign {c.id}")
                       for c in door.open_campaigns(holder.referrer_id)
                       if c.pays_kickback and c.id not in have]
        return HTMLResponse(pages.status_page(status, shares, share_pages), headers=NO_STORE)

    async def share_page(request: Request) -> Response:
        holder = _holder(request)
        if holder is None:
            return HTMLResponse(pages.problem_page("Unknown link", "This link is not valid."),
                                status_code=404, headers=NO_STORE)
        campaign_id = request.path_params["campaign"]
        try:
            issued, _ = await door.issue(holder.shop_id, holder.referrer_id,
                                         None if campaign_id == "default" else campaign_id)
        except IssueError as exc:
            return HTMLResponse(pages.problem_page("Not available to you", str(exc)),
                                status_code=403, headers=NO_STORE)
        campaign = rules.campaign_by_id.get(issued.campaign_id or "")
        body = pages.share_block(issued.code, door.link(issued), campaign,
                                 door.referee_discount(issued.campaign_id))
        back = f"<p><a href='/s/{request.path_params['secret']}'>Back to your referrals</a></p>"
        return HTMLResponse(pages.page("Share your link", body + back), headers=NO_STORE)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "rules_version": rules.version})

    app = Starlette(routes=[
        Route("/qr/{code}.{kind}", qr, methods=["GET"]),
        Route("/api/v1/codes", issue_code, methods=["POST"]),
        Route("/api/v1/status-links", new_status_link, methods=["POST"]),
        Route("/api/v1/status-links/revoke", revoke_status_links, methods=["POST"]),
        Route("/api/v1/status/{secret}", status_api, methods=["GET"]),
        Route("/s/{secret}", status_page, methods=["GET"]),
        Route("/s/{secret}/share/{campaign}", share_page, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
    ], lifespan=lifespan)
    return FollowedLinks(app, door, secure_cookie=settings.web_public_url.startswith("https:"))


class FollowedLinks:
    """GET/HEAD /r/{code} as a bare ASGI handler in front of the Starlette app (everything
    else): the one hot path skips routing, middleware and request/response objects, about
    half of what a followed link cost (bench/bench_serve.py)."""

    def __init__(self, app: ASGIApp, door: FrontDoor, *, secure_cookie: bool) -> None:
        self.app, self.door = app, door
        self.cookie_suffix = (f"; Max-Age={VISITOR_COOKIE_MAX_AGE_S}; Path=/; HttpOnly; "
                              f"SameSite=lax{'; Secure' if secure_cookie else ''}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if (not path.startswith(_FOLLOW_PREFIX) or "/" in path[len(_FOLLOW_PREFIX):]
                or scope["method"] not in ("GET", "HEAD")):
            await self.app(scope, receive, send)
            return
        door = self.door
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        # One pass over the raw headers for the few this path reads.
        headers = {name.decode(): value.decode("latin-1")
                   for name, value in scope["headers"] if name in _FOLLOW_HEADERS}
        agent = headers.get("user-agent", "")
        automated = is_automated(scope["method"], agent, headers)
        if not automated and not door.limiter.allow(ip, door.clock()):
            page = pages.problem_page("Too many requests",
                                      "Too many links were followed from your network just "
                                      "now. Please wait a moment and try again.")
            await _answer(send, 429, page, [(b"retry-after",
                                              str(door.limiter.retry_after_s(ip)).encode())])
            return
        cookies = cookie_parser(headers["cookie"]) if "cookie" in headers else {}
        followed = await door.follow(path[len(_FOLLOW_PREFIX):],
                                     visitor_id=cookies.get(VISITOR_COOKIE), ip=ip,
                                     user_agent=agent, automated=automated)
        extra: list[tuple[bytes, bytes]] = []
        if followed.new_visitor and not automated:
            extra.append((b"set-cookie",
                          f"{VISITOR_COOKIE}={followed.visitor_id}{self.cookie_suffix}".encode()))
        if followed.redirect_to is not None:
            # Built by urlencode from the rules and the code: already a valid URL.
            await _answer(send, 302, None,
                          [(b"location", followed.redirect_to.encode()), *extra])
        elif followed.code is None:
            await _answer(send, 404, pages.problem_page("Unknown link", followed.problem or ""),
                          extra)
        else:
            await _answer(send, 410, pages.problem_page("This offer is not running",
                                                        followed.problem or ""), extra)


async def _answer(send: Send, status: int, page: str | None,
                  headers: list[tuple[bytes, bytes]]) -> None:
    body = page.encode() if page is not None else b""
    content = [(b"content-type", b"text/html; charset=utf-8")] if page is not None else []
    await send({"type": "http.response.start", "status": status,
                "headers": [*content, (b"content-length", str(len(body)).encode()),
                            *_NO_STORE_RAW, *headers]})
    await send({"type": "http.response.body", "body": body})
