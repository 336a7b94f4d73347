"""Every request passes here first: the loopback Host, the per-launch token
exchanged for a cookie, the Origin of state-changing requests, and the
headers that keep pages from being framed, sniffed or scripted from outside.

Refusals are plain text with no detail an attacker could use.
"""

from __future__ import annotations

import hmac
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "p2p_session"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make Origin "null"
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class Guard:
    """ASGI middleware; `token` is the launch secret, single use."""

    def __init__(self, app: ASGIApp, port: int, token: str) -> None:
        self.app = app
        self.port = port
        self.origin = f"http://127.0.0.1:{port}"
        self.host = f"127.0.0.1:{port}"
        self._token: str | None = token
        self.session = secrets.token_urlsafe(32)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if headers.get("host") != self.host:
            await _refuse(
                send, 421, "This address is not the app's. Open the link 'p2p app' printed."
            )
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        signed_in = hmac.compare_digest(_cookie(headers.get("cookie", "")), self.session)
        offered = query.get("token")
        if offered is not None:
            await self._exchange(scope, send, offered, query, signed_in)
            return
        if not signed_in:
            await _refuse(
                send, 403, "Not signed in to this app. Open the link 'p2p app' printed, once."
            )
            return
        if scope["method"] not in SAFE_METHODS and headers.get("origin") != self.origin:
            await _refuse(send, 403, "Refused: this request did not come from the app's own pages.")
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                own = list(message.get("headers", []))
                names = {k.lower() for k, _v in own} - {b"content-security-policy"}
                message["headers"] = own + [(k, v) for k, v in HEADERS if k not in names]
            await send(message)

        await self.app(scope, receive, with_headers)

    async def _exchange(
        self, scope: Scope, send: Send, offered: str, query: dict, signed_in: bool
    ) -> None:
        token = self._token
        valid = token is not None and hmac.compare_digest(offered.encode(), token.encode())
        if not valid and not signed_in:
            await _refuse(send, 403, "This link was already used or is wrong. Run 'p2p app' again.")
            return
        self._token = None  # exchanged once (an already signed-in tab just drops it)
        rest = {k: v for k, v in query.items() if k != "token"}
        location = scope["path"] + (("?" + urlencode(rest)) if rest else "")
        cookie = f"{COOKIE}={self.session}; HttpOnly; SameSite=Strict; Path=/"
        headers = [(b"location", location.encode()), *HEADERS]
        if valid:
            headers.append((b"set-cookie", cookie.encode()))
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _cookie(header: str) -> str:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # noqa: BLE001 - a malformed cookie is simply absent
        return ""
    morsel = jar.get(COOKIE)
    return morsel.value if morsel else ""


async def _refuse(send: Send, status: int, text: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), *HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": text.encode()})
