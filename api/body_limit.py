"""Request bodies past FARM_MAX_REQUEST_BYTES are refused with 413 before they are read: by their
Content-Length, or, for chunked uploads that declare none, as soon as the bytes received pass it.
Starlette has no such cap of its own."""

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def too_large(limit: int) -> tuple[Message, Message]:
    body = json.dumps(
        {"status": 413, "detail": f"The request body is larger than {limit:,} bytes: send a smaller one."}
    ).encode()
    start: Message = {
        "type": "http.response.start",
        "status": 413,
        # close: the server would otherwise read and discard the rest to keep the connection alive
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            for message in too_large(self.max_bytes):
                await send(message)
            return
        received = 0
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    for reply in too_large(self.max_bytes):
                        await send(reply)
                    return {"type": "http.disconnect"}  # the app stops reading; its own answer is dropped
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counting_receive, guarded_send)
