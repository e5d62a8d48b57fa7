"""The S3 subset tansu's object_store client uses, over HTTP/1.1 with keep-alive (asyncio).

Path-style requests `/<bucket>/<key>` (the key percent-encoded); signatures are not checked
(the server listens on 127.0.0.1 only). Implemented: GET (with If-None-Match -> 304 and
If-Match -> 412), HEAD, PUT (unconditional, If-None-Match: * and If-Match: ETag -> 412 when
the condition fails), DELETE, ListObjectsV2 (prefix, delimiter, start-after, continuation
token, max-keys up to 1,000) and DeleteObjects (POST /bucket?delete). A request is handled
whole, without an await between reading an object's state and writing it, so a conditional
PUT is atomic.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import formatdate
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from recommender.objectstore.disk import DiskStore, Meta, StoreError

log = logging.getLogger("flashrec.objectstore")

MAX_KEYS = 1000
MAX_BODY = 1 << 30
_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
_REASONS = {200: "OK", 204: "No Content", 304: "Not Modified", 400: "Bad Request",
            404: "Not Found", 405: "Method Not Allowed", 411: "Length Required",
            412: "Precondition Failed", 413: "Payload Too Large",
            500: "Internal Server Error"}  # fmt: skip

Response = tuple[int, dict[str, str], bytes]
PutHook = Callable[[str, str, bytes], None]


def _error(status: int, code: str, message: str) -> Response:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message></Error>").encode()  # fmt: skip
    return status, {"Content-Type": "application/xml"}, body


def _iso(mtime_ns: int) -> str:
    """RFC 3339 with microseconds, as S3 listings give LastModified."""
    when = datetime.fromtimestamp(mtime_ns // 1000 / 1e6, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _object_headers(meta: Meta) -> dict[str, str]:
    return {"ETag": meta.etag, "Last-Modified": formatdate(meta.mtime_ns / 1e9, usegmt=True),
            "Content-Type": "application/octet-stream"}  # fmt: skip


def _etags(header: str) -> set[str]:
    return {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}


class S3App:
    """Answers S3 requests from a DiskStore; `on_put` sees every object written."""

    def __init__(self, store: DiskStore, on_put: PutHook | None = None) -> None:
        self.store = store
        self.on_put = on_put
        self.requests = 0

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        self.requests += 1
        url = urlsplit(target)
        query = parse_qs(url.query, keep_blank_values=True)
        bucket, _, key = unquote(url.path).lstrip("/").partition("/")
        try:
            if not bucket:
                return 200, {"Content-Type": "text/plain"}, b"flashrec objectstore\n"
            if not key:
                return self._bucket(method, bucket, query, body)
            if method in ("GET", "HEAD"):
                return self._get(method, bucket, key, headers)
            if method == "PUT":
                return self._put(bucket, key, headers, body)
            if method == "DELETE":
                self.store.delete(bucket, key)
                return 204, {}, b""
        except StoreError as exc:
            return _error(400, "InvalidArgument", str(exc))
        return _error(405, "MethodNotAllowed", f"{method} is not supported here")

    def _bucket(self, method: str, bucket: str, query: dict[str, list[str]],
                body: bytes) -> Response:  # fmt: skip
        if method == "GET":
            return self._list(bucket, query)
        if method == "POST" and "delete" in query:
            return self._delete_many(bucket, body)
        if method in ("PUT", "HEAD"):  # create bucket / bucket exists: buckets are implicit
            return 200, {}, b""
        return _error(405, "MethodNotAllowed", f"{method} on a bucket is not supported")

    def _get(self, method: str, bucket: str, key: str, headers: dict[str, str]) -> Response:
        meta = self.store.head(bucket, key)
        if meta is None:
            return _error(404, "NoSuchKey", f"no object {key}")
        if "if-match" in headers and meta.etag not in _etags(headers["if-match"]):
            return _error(412, "PreconditionFailed", "If-Match does not match")
        if "if-none-match" in headers and meta.etag in _etags(headers["if-none-match"]):
            return 304, {"ETag": meta.etag}, b""
        if method == "HEAD":
            out = _object_headers(meta)
            out["Content-Length"] = str(meta.size)
            return 200, out, b""
        found = self.store.read(bucket, key)
        if found is None:
            return _error(404, "NoSuchKey", f"no object {key}")
        meta, data = found
        return 200, _object_headers(meta), data

    def _put(self, bucket: str, key: str, headers: dict[str, str], body: bytes) -> Response:
        meta = self.store.head(bucket, key)
        if headers.get("if-none-match", "").strip() == "*" and meta is not None:
            return _error(412, "PreconditionFailed", f"{key} exists")
        if "if-match" in headers and (meta is None or meta.etag not in _etags(headers["if-match"])):
            return _error(412, "PreconditionFailed", f"{key} changed or is gone")
        meta = self.store.write(bucket, key, body)
        if self.on_put is not None:
            self.on_put(bucket, key, body)
        return 200, {"ETag": meta.etag}, b""

    def _list(self, bucket: str, query: dict[str, list[str]]) -> Response:
        def arg(name: str) -> str:
            return query.get(name, [""])[0]

        prefix, delimiter = arg("prefix"), arg("delimiter")
        try:
            max_keys = max(0, min(MAX_KEYS, int(arg("max-keys") or MAX_KEYS)))
            token = arg("continuation-token")
            after = base64.urlsafe_b64decode(token).decode() if token else arg("start-after")
        except ValueError as exc:
            return _error(400, "InvalidArgument", f"bad listing arguments: {exc}")
        keys, prefixes, more = self.store.list(bucket, prefix, delimiter, after, max_keys)
        enc = (lambda s: quote(s, safe="/")) if arg("encoding-type") == "url" else escape
        metas = self.store.meta.get(bucket, {})
        parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{_XMLNS}">',
                 f"<Name>{escape(bucket)}</Name><Prefix>{enc(prefix)}</Prefix>",
                 f"<KeyCount>{len(keys) + len(prefixes)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>",
                 f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>"]  # fmt: skip
        if delimiter:
            parts.append(f"<Delimiter>{enc(delimiter)}</Delimiter>")
        if token:
            parts.append(f"<ContinuationToken>{escape(token)}</ContinuationToken>")
        if more:
            next_token = base64.urlsafe_b64encode(more.encode()).decode()
            parts.append(f"<NextContinuationToken>{next_token}</NextContinuationToken>")
        for key in keys:
            m = metas[key]
            parts.append(f"<Contents><Key>{enc(key)}</Key><LastModified>{_iso(m.mtime_ns)}"
                         f"</LastModified><ETag>{escape(m.etag)}</ETag><Size>{m.size}</Size>"
                         "<StorageClass>STANDARD</StorageClass></Contents>")  # fmt: skip
        parts.extend(f"<CommonPrefixes><Prefix>{enc(p)}</Prefix></CommonPrefixes>"
                     for p in prefixes)  # fmt: skip
        parts.append("</ListBucketResult>")
        return 200, {"Content-Type": "application/xml"}, "".join(parts).encode()

    def _delete_many(self, bucket: str, body: bytes) -> Response:
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError as exc:
            return _error(400, "MalformedXML", str(exc))
        ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
        quiet = (root.findtext(f"{ns}Quiet") or "").strip().lower() == "true"
        done = []
        for obj in root.iter(f"{ns}Object"):
            key = obj.findtext(f"{ns}Key") or ""
            if key:
                self.store.delete(bucket, key)
                done.append(key)
        parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<DeleteResult xmlns="{_XMLNS}">']
        if not quiet:
            parts.extend(f"<Deleted><Key>{escape(k)}</Key></Deleted>" for k in done)
        parts.append("</DeleteResult>")
        return 200, {"Content-Type": "application/xml"}, "".join(parts).encode()


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes | None:
    """The request body (Content-Length or chunked); None when it is too large."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = int(headers.get("content-length", "0") or 0)
    if length > MAX_BODY:
        return None
    return await reader.readexactly(length) if length else b""


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]] | None:
    line = await reader.readline()
    if not line.strip():
        return None
    method, target, _version = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            return method.upper(), target, headers
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()


def _response(status: int, headers: dict[str, str], body: bytes, head_only: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
             f"Date: {formatdate(time.time(), usegmt=True)}", "Server: flashrec-objectstore"]
    headers.setdefault("Content-Length", str(len(body)))
    lines.extend(f"{k}: {v}" for k, v in headers.items())
    payload = b"" if head_only or status in (204, 304) else body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


async def serve_connection(app: S3App, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:  # fmt: skip
    """Answer the requests of one connection until the client closes it."""
    try:
        while True:
            head = await _read_head(reader)
            if head is None:
                break
            method, target, headers = head
            if headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = await _read_body(reader, headers)
            if body is None:
                writer.write(_response(*_error(413, "EntityTooLarge", "body too large"), False))
                break
            try:
                status, out, data = app.handle(method, target, headers, body)
            except Exception:
                log.exception("%s %s failed", method, target)
                status, out, data = _error(500, "InternalError", "see the object store's log")
            writer.write(_response(status, out, data, method == "HEAD"))
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                break
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass  # the client went away or sent garbage: drop the connection
    except asyncio.CancelledError:
        pass  # the server stops
    finally:
        writer.close()
