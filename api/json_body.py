"""Read request bodies as JSON whatever their declared type, so ``curl -d '{…}'`` works as in the
hosted APIs' examples (curl labels such bodies ``application/x-www-form-urlencoded``).

Safe here: the API has no form endpoints except multipart uploads (left alone), and every
state-changing route needs an ``Authorization``/``X-API-Key`` header, which a cross-site form
cannot send.
"""

from starlette.types import ASGIApp, Receive, Scope, Send

JSON_CONTENT_TYPE = (b"content-type", b"application/json")
# Declared types that never carry anything but the JSON body the client meant.
REWRITTEN_TYPES = (b"application/x-www-form-urlencoded", b"text/plain")


class JsonBodyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            headers = [(name, value) for name, value in scope["headers"] if name != b"content-type"]
            declared = next((value for name, value in scope["headers"] if name == b"content-type"), b"")
            if not declared or declared.split(b";")[0].strip().lower() in REWRITTEN_TYPES:
                scope = {**scope, "headers": [*headers, JSON_CONTENT_TYPE]}
        await self.app(scope, receive, send)
