"""A lean HTTP/1.1 load-generating client: one keep-alive connection, one request in flight.

Why: the HTTP submit bench (http_submit.py) measures the server, but on a 2-core machine its
client shares the cores with it. httpx spent ~1.1 ms of CPU per request (its request and
response models, headers, the connection pool, anyio), half the server's own ~2.2 ms, so
the client took CPU the server would have used. This one writes the request bytes
prepared once (only the body and its length change) on an asyncio stream and reads the
answer's head and its Content-Length body (chunked bodies too, should a route stream):
tens of microseconds. It checks nothing HTTP does not require; the bench checks the
answers (status 201, the job's JSON).

Only what the bench needs: no TLS, no redirects, no compression, no pipelining. A
connection the server closes (`Connection: close`, or gone between requests) is opened
again, and counted (`connections`), so the bench can tell keep-alive held."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


class HttpError(Exception):
    """The connection failed or the answer was not HTTP/1.1 as expected."""


class RawClient:
    def __init__(self, base_url: str, headers: dict[str, str], timeout: float = 30):
        url = urlsplit(base_url)
        if url.scheme != "http" or not url.hostname or not url.port:
            raise ValueError(f"http://host:port expected, not {base_url!r}")
        self.host, self.port, self.timeout = url.hostname, url.port, timeout
        self.headers = "".join(f"{k}: {v}\r\n" for k, v in {"Host": url.netloc, **headers}.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.local_ports: list[int] = []  # one per connection opened

    async def post(self, path: str, body: bytes, content_type: str = "application/json") -> tuple[int, bytes]:
        """(status, body) of one POST; HttpError when the connection fails or the answer is garbled."""
        head = (
            f"POST {path} HTTP/1.1\r\n{self.headers}Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            return await asyncio.wait_for(self._exchange(head.encode() + body), self.timeout)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as exc:
            await self.close()
            raise HttpError(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.local_ports.append(self.writer.get_extra_info("sockname")[1])
        assert self.reader is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
        version, status, _ = (status_line.split(" ", 2) + [""])[:3]
        if version != "HTTP/1.1" or not status.isdigit():
            raise ValueError(f"not an HTTP/1.1 answer: {status_line!r}")
        fields = {}
        for line in lines:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if "content-length" in fields:
            body = await self.reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            body = await self._chunks()
        else:
            raise ValueError("an answer with neither Content-Length nor chunked encoding")
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return int(status), body

    async def _chunks(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")  # no trailers expected: the last CRLF
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    async def close(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
