"""The ``$batch`` wire format: one change set in, its multipart response out.

As powerapps-docs ``execute-batch-operations-using-web-api`` documents it: the batch is ``multipart/mixed`` with
a ``batch_<id>`` boundary; a change set is a nested ``multipart/mixed`` part with a ``changeset_<id>``
boundary whose parts are ``application/http`` / ``Content-Transfer-Encoding: binary`` with a ``Content-ID``,
each holding a raw HTTP request (request line, headers, blank line, body). A change set is atomic: when one
request fails Dataverse rolls back the others, stops, and answers with the failing part (the outer status then
is the failing request's). Lines end in CRLF, as MIME requires.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from providers.dataverse.errors import UnexpectedResponse

CRLF = "\r\n"


@dataclass(frozen=True)
class BatchRequest:
    """One request of a change set; ``path`` is absolute from the origin (``/api/data/v9.2/...``)."""

    method: str
    path: str
    body: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class BatchResponse:
    """One response part: its Content-ID (when the server echoed it), status, headers and body text."""

    content_id: str | None
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = ""

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None


def encode_change_set(
    requests: Sequence[BatchRequest], *, batch_id: str | None = None, change_set_id: str | None = None
) -> tuple[str, bytes]:
    """(Content-Type header, body) of a ``$batch`` holding ``requests`` as ONE change set (Content-ID 1..n)."""
    batch = f"batch_{batch_id or uuid.uuid4()}"
    change_set = f"changeset_{change_set_id or uuid.uuid4()}"
    lines = [f"--{batch}", f"Content-Type: multipart/mixed; boundary={change_set}", ""]
    for content_id, request in enumerate(requests, start=1):
        lines += [
            f"--{change_set}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            f"Content-ID: {content_id}",
            "",
            f"{request.method} {request.path} HTTP/1.1",
        ]
        if request.body is not None:
            lines += ["Content-Type: application/json", "", json.dumps(request.body, separators=(",", ":"))]
        else:
            lines += ["", ""]
    lines += [f"--{change_set}--", f"--{batch}--", ""]
    return f"multipart/mixed; boundary={batch}", CRLF.join(lines).encode("utf-8")


_BOUNDARY = re.compile(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_STATUS_LINE = re.compile(r"^HTTP/\d(?:\.\d)?\s+(\d{3})\b")


def boundary_of(content_type: str) -> str | None:
    if not content_type.lower().lstrip().startswith("multipart/"):
        return None
    match = _BOUNDARY.search(content_type)
    return (match.group(1) or match.group(2)) if match else None


def _headers(lines: Sequence[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def _split_parts(text: str, boundary: str) -> list[str]:
    """The parts between ``--boundary`` delimiter lines (preamble and epilogue dropped)."""
    parts: list[str] = []
    current: list[str] | None = None
    for line in text.split("\n"):
        marker = line.rstrip()
        if marker == f"--{boundary}--":
            if current is not None:
                parts.append("\n".join(current))
            return parts
        if marker == f"--{boundary}":
            if current is not None:
                parts.append("\n".join(current))
            current = []
        elif current is not None:
            current.append(line)
    raise UnexpectedResponse(f"$batch response is missing its closing boundary --{boundary}--")


def _head_and_body(part: str) -> tuple[list[str], str]:
    head, _, body = part.partition("\n\n")
    return head.split("\n"), body


def decode_batch_response(content_type: str, body: bytes) -> list[BatchResponse]:
    """Every ``application/http`` response of a ``$batch`` response, change sets flattened, in order."""
    boundary = boundary_of(content_type)
    if boundary is None:
        raise UnexpectedResponse(f"$batch answered with {content_type or 'no Content-Type'}, not multipart/mixed")
    text = body.decode("utf-8", errors="replace").replace("\r\n", "\n")
    return _decode(text, boundary)


def _decode(text: str, boundary: str) -> list[BatchResponse]:
    responses: list[BatchResponse] = []
    for part in _split_parts(text, boundary):
        head, payload = _head_and_body(part.lstrip("\n"))
        headers = _headers(head)
        nested = boundary_of(headers.get("content-type", ""))
        if nested is not None:
            responses += _decode(payload, nested)
            continue
        responses.append(_http_response(headers.get("content-id"), payload))
    return responses


def _http_response(content_id: str | None, payload: str) -> BatchResponse:
    head, body = _head_and_body(payload.lstrip("\n"))
    match = _STATUS_LINE.match(head[0]) if head else None
    if match is None:
        raise UnexpectedResponse(f"$batch response part has no HTTP status line: {head[0][:80] if head else ''!r}")
    return BatchResponse(content_id, int(match.group(1)), _headers(head[1:]), body.rstrip("\n"))
