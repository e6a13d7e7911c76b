"""The ``$batch`` wire format: change sets and single requests in, their multipart response out.

As powerapps-docs ``execute-batch-operations-using-web-api`` documents it: the batch is ``multipart/mixed`` with
a ``batch_<id>`` boundary; a change set is a nested ``multipart/mixed`` part with a ``changeset_<id>``
boundary whose parts are ``application/http`` / ``Content-Transfer-Encoding: binary`` with a ``Content-ID``,
each holding a raw HTTP request (request line, headers, blank line, body). Parts outside a change set are single
requests (a ``GET`` may only be one of those). Dataverse runs the items in order and answers in the same order.

A change set is atomic: when one of its requests fails Dataverse rolls back the others and answers the change set
with that one failing response (a single ``application/http`` part instead of a nested ``changesetresponse``).
Without ``Prefer: odata.continue-on-error`` the batch then stops (its status is the failing request's); with it,
the following items still run and the batch answers 200. ``Content-ID`` values are kept unique across the whole
batch, so ``$<id>`` (a reference to the entity a request of the same change set created, usable in a later URL
or ``@odata.id``) is never ambiguous. Lines end in CRLF, as MIME requires.
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


MAX_BATCH_OPERATIONS = 1000  # Dataverse: "Batch requests can contain up to 1000 individual requests"


@dataclass(frozen=True)
class BatchRequest:
    """One request of a batch. ``path`` is absolute from the origin (``/api/data/v9.2/...``, with its query) or
    starts with ``$<Content-ID>`` (a reference to an entity created earlier in the same change set)."""

    method: str
    path: str
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content_id: str | None = None  # required inside a change set


@dataclass(frozen=True)
class ChangeSet:
    """Requests applied atomically, in order: all of them or none."""

    requests: tuple[BatchRequest, ...]


BatchItem = ChangeSet | BatchRequest


@dataclass(frozen=True)
class BatchResponse:
    """One response part: its Content-ID (when the server echoed it), status, headers and body text."""

    content_id: str | None
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = ""

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None


def operations(items: Sequence[BatchItem]) -> int:
    """How many requests ``items`` hold (the 1000-per-batch limit counts requests, change sets' included)."""
    return sum(len(item.requests) if isinstance(item, ChangeSet) else 1 for item in items)


def _request_lines(request: BatchRequest) -> list[str]:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if request.content_id is not None:
        lines.append(f"Content-ID: {request.content_id}")
    lines += ["", f"{request.method} {request.path} HTTP/1.1"]
    headers = dict(request.headers)
    if request.body is not None:
        headers.setdefault("Content-Type", "application/json")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if request.body is not None:
        lines += ["", json.dumps(request.body, separators=(",", ":"))]
    else:
        lines += ["", ""]
    return lines


def encode_batch(items: Sequence[BatchItem], *, batch_id: str | None = None) -> tuple[str, bytes]:
    """(Content-Type header, body) of a ``$batch`` holding ``items`` in order: change sets and single requests."""
    if operations(items) > MAX_BATCH_OPERATIONS:
        raise ValueError(f"a $batch holds at most {MAX_BATCH_OPERATIONS} requests (got {operations(items)})")
    batch = f"batch_{batch_id or uuid.uuid4()}"
    lines: list[str] = []
    for item in items:
        if isinstance(item, ChangeSet):
            if not item.requests or any(r.method == "GET" or r.content_id is None for r in item.requests):
                raise ValueError("a change set holds at least one request, each with a Content-ID and none a GET")
            change_set = f"changeset_{uuid.uuid4()}"
            lines += [f"--{batch}", f"Content-Type: multipart/mixed; boundary={change_set}", ""]
            for request in item.requests:
                lines += [f"--{change_set}", *_request_lines(request)]
            lines += [f"--{change_set}--"]
        else:
            lines += [f"--{batch}", *_request_lines(item)]
    lines += [f"--{batch}--", ""]
    return f"multipart/mixed; boundary={batch}", CRLF.join(lines).encode("utf-8")


def encode_change_set(
    requests: Sequence[BatchRequest], *, batch_id: str | None = None, change_set_id: str | None = None
) -> tuple[str, bytes]:
    """(Content-Type header, body) of a ``$batch`` holding ``requests`` as ONE change set (Content-ID 1..n)."""
    numbered = tuple(
        BatchRequest(r.method, r.path, r.body, r.headers, str(content_id))
        for content_id, r in enumerate(requests, start=1)
    )
    del change_set_id  # the boundary is random; kept for callers that passed one
    return encode_batch([ChangeSet(numbered)], batch_id=batch_id)


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
    flat: list[BatchResponse] = []
    for item in decode_batch_items(content_type, body):
        flat += item if isinstance(item, list) else [item]
    return flat


def decode_batch_items(content_type: str, body: bytes) -> list[BatchResponse | list[BatchResponse]]:
    """The top-level answers of a ``$batch`` response, in order: a list for a change set that succeeded, a single
    response for a request outside a change set or for a change set that failed (Dataverse answers a failed change
    set with its one failing response)."""
    boundary = boundary_of(content_type)
    if boundary is None:
        raise UnexpectedResponse(f"$batch answered with {content_type or 'no Content-Type'}, not multipart/mixed")
    text = body.decode("utf-8", errors="replace").replace("\r\n", "\n")
    items: list[BatchResponse | list[BatchResponse]] = []
    for part in _split_parts(text, boundary):
        head, payload = _head_and_body(part.lstrip("\n"))
        headers = _headers(head)
        nested = boundary_of(headers.get("content-type", ""))
        if nested is not None:
            items.append(_decode(payload, nested))
        else:
            items.append(_http_response(headers.get("content-id"), payload))
    return items


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
