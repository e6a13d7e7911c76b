"""``POST $batch``: the multipart/mixed format of OData 4.0 section 11.7, as Dataverse documents it.

From powerapps-docs ``execute-batch-operations-using-web-api``:
- the batch body is ``multipart/mixed; boundary=batch_<id>``; each part is ``Content-Type: application/http``
  + ``Content-Transfer-Encoding: binary`` followed by a raw HTTP request;
- a change set is a nested ``multipart/mixed; boundary=changeset_<id>`` part; its requests are atomic (any
  failure rolls back those already done), may carry ``Content-ID`` and refer to an entity created earlier in
  the same change set as ``$<id>`` (in the URL or in an ``@odata.bind`` / ``@odata.id`` value), and may not be
  GETs; a reference to a Content-ID not yet declared is a 400;
- at most 1000 requests per batch; requests run in order and the responses come back in the same structure
  (``batchresponse_<guid>`` / ``changesetresponse_<guid>``);
- the first failure stops the batch (unless ``Prefer: odata.continue-on-error``): the batch answers with the
  failing request's status, and a failed change set is answered by that one failing response;
- with ``Prefer: odata.continue-on-error`` every item runs (several change sets each succeed or fail on their own)
  and the batch answers 200; when an item failed, the answer carries ``Preference-Applied:
  odata.continue-on-error`` (OData 4.01 protocol, 8.2.8.3: a service that continued after an error says so).
"""

from __future__ import annotations

import http
import json
import re
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from ..http import EmuRequest, EmuResponse, Headers
from .errors import QUERY_SYNTAX, WebApiError
from .state import DataverseEnvironment

MAX_REQUESTS = 1000


@dataclass
class BatchPart:
    """One raw HTTP request inside a batch or change set."""

    method: str
    url: str
    headers: Headers
    body: bytes
    content_id: str | None = None


@dataclass
class ChangeSet:
    parts: list[BatchPart] = field(default_factory=list)


def _bad(message: str) -> WebApiError:
    return WebApiError(400, QUERY_SYNTAX, message)


def _boundary(content_type: str) -> str | None:
    match = re.search(r'boundary\s*=\s*"?([^";]+)"?', content_type, re.IGNORECASE)
    return match.group(1).strip() if match else None


def _split_multipart(text: str, boundary: str) -> list[str]:
    """The bodies between ``--boundary`` delimiters (the line break before a delimiter belongs to it)."""
    delimiter = f"--{boundary}"
    parts: list[str] = []
    current: list[str] | None = None
    closed = False
    for line in text.splitlines(keepends=True):
        stripped = line.rstrip("\r\n").rstrip()
        if stripped in (delimiter, f"{delimiter}--"):
            if current is not None:
                body = "".join(current)
                parts.append(body[:-2] if body.endswith("\r\n") else body[:-1] if body.endswith("\n") else body)
            if stripped.endswith("--"):
                closed = True
                break
            current = []
        elif current is not None:
            current.append(line)
    if not closed:
        raise _bad(f"The multipart body is not terminated by '--{boundary}--'.")
    return parts


def _headers_and_body(text: str) -> tuple[Headers, str]:
    headers = Headers()
    lines = text.splitlines(keepends=True)
    index = 0
    while index < len(lines):
        line = lines[index].rstrip("\r\n")
        index += 1
        if line == "":
            break
        name, colon, value = line.partition(":")
        if not colon:
            raise _bad(f"Malformed header line in a batch part: '{line}'.")
        headers[name.strip()] = value.strip()
    return headers, "".join(lines[index:])


def _request(part_text: str, *, in_change_set: bool) -> BatchPart:
    part_headers, content = _headers_and_body(part_text)
    if not part_headers.get("Content-Type", "").lower().startswith("application/http"):
        raise _bad("Each batch part must have 'Content-Type: application/http' (or be a change set).")
    if part_headers.get("Content-Transfer-Encoding", "").lower() != "binary":
        raise _bad("Each batch part must have 'Content-Transfer-Encoding: binary'.")
    request_line, _, rest = content.lstrip("\r\n").partition("\n")
    # As ODataLib reads it: method up to the first space, version after the last, the URL in between.
    line = request_line.strip()
    method, _, remainder = line.partition(" ")
    url, _, version = remainder.rpartition(" ")
    if not method.isalpha() or not url.strip() or not version.startswith("HTTP/"):
        raise _bad(f"Malformed request line in a batch part: '{line}'.")
    method, url = method.upper(), url.strip()
    headers, body = _headers_and_body(rest)
    if in_change_set and method == "GET":
        raise _bad("GET requests are not allowed within a change set.")
    content_id = part_headers.get("Content-ID") or headers.get("Content-ID")
    return BatchPart(method, url, headers, body.rstrip("\r\n").encode("utf-8"), content_id)


def parse_batch(content_type: str, body: bytes) -> list[BatchPart | ChangeSet]:
    """The requests and change sets of a ``$batch`` body, in order; 400 when the format is broken."""
    if not content_type.lower().startswith("multipart/mixed"):
        raise _bad("A $batch request must have 'Content-Type: multipart/mixed; boundary=batch_<id>'.")
    boundary = _boundary(content_type)
    if boundary is None:
        raise _bad("The Content-Type of a $batch request has no boundary.")
    items: list[BatchPart | ChangeSet] = []
    for part_text in _split_multipart(body.decode("utf-8"), boundary):
        headers, content = _headers_and_body(part_text)
        if headers.get("Content-Type", "").lower().startswith("multipart/mixed"):
            inner_boundary = _boundary(headers["Content-Type"])
            if inner_boundary is None:
                raise _bad("A change set part has no boundary.")
            change_set = ChangeSet()
            for inner in _split_multipart(content, inner_boundary):
                inner_headers, _ = _headers_and_body(inner)
                if inner_headers.get("Content-Type", "").lower().startswith("multipart/"):
                    raise _bad("Change sets cannot be nested.")
                change_set.parts.append(_request(inner, in_change_set=True))
            ids = [p.content_id for p in change_set.parts if p.content_id is not None]
            if len(ids) != len(set(ids)):
                raise _bad("Content-ID values must be unique within a change set.")
            items.append(change_set)
        else:
            items.append(_request(part_text, in_change_set=False))
    total = sum(len(i.parts) if isinstance(i, ChangeSet) else 1 for i in items)
    if total > MAX_REQUESTS:
        raise _bad(f"The batch holds {total} requests; the maximum number of requests in a batch is {MAX_REQUESTS}.")
    return items


# ------------------------------------------------------------------------------------------- executing
Dispatch = Callable[[EmuRequest], EmuResponse]


@dataclass
class _Answer:
    response: EmuResponse
    content_id: str | None


class BatchRun:
    """Runs the parsed items of one ``$batch`` through ``dispatch`` and renders the multipart answer."""

    def __init__(self, req: EmuRequest, state: DataverseEnvironment, dispatch: Dispatch, base_path: str) -> None:
        self.req = req
        self.state = state
        self.dispatch = dispatch
        self.base_path = base_path  # "/api/data/v9.2/"
        self.operations: list[tuple[str, str, int]] = []

    def run(self, items: list[BatchPart | ChangeSet]) -> EmuResponse:
        continue_on_error = "odata.continue-on-error" in self.req.headers.get("Prefer", "").lower()
        answers: list[_Answer | list[_Answer]] = []
        status = 200
        continued = False
        for item in items:
            if isinstance(item, ChangeSet):
                outcome = self._change_set(item)
                answers.append(outcome)
                failed = outcome[0].response.status if len(outcome) == 1 and outcome[0].response.status >= 400 else 0
            else:
                answer = self._execute(item, {})
                answers.append(answer)
                failed = answer.response.status if answer.response.status >= 400 else 0
            if failed and not continue_on_error:
                status = failed
                break
            continued = continued or bool(failed)
        boundary = f"batchresponse_{uuid.uuid4()}"
        headers = {"Content-Type": f"multipart/mixed; boundary={boundary}", "OData-Version": "4.0"}
        if continued:
            headers["Preference-Applied"] = "odata.continue-on-error"
        return EmuResponse(status, headers, _render(answers, boundary).encode("utf-8"), list(self.operations))

    def _change_set(self, change_set: ChangeSet) -> list[_Answer]:
        snapshot = self.state.snapshot()
        references: dict[str, str] = {}
        answers: list[_Answer] = []
        for part in change_set.parts:
            answer = self._execute(part, references)
            if answer.response.status >= 400:
                self.state.restore(snapshot)  # atomic: nothing of this change set remains
                return [answer]
            answers.append(answer)
            if part.content_id is not None:
                created = answer.response.headers.get("OData-EntityId") or self._absolute(part, references)
                references[part.content_id] = created
        return answers

    def _absolute(self, part: BatchPart, references: dict[str, str]) -> str:
        path, _ = self._resolve_url(part.url, references)
        return f"{self.req.origin}{path}"

    def _resolve_url(self, url: str, references: dict[str, str]) -> tuple[str, str]:
        """(path, query) of an inner request's URL: absolute, server-relative, service-relative or ``$n``."""
        if url.startswith("$"):
            reference, _, rest = url[1:].partition("/")
            target = references.get(reference)
            if target is None:
                raise _bad(f"Content-ID Reference: '${reference}' does not exist in the batch context.")
            url = f"{target}/{rest}" if rest else target
        split = urllib.parse.urlsplit(url)
        if split.scheme:
            if f"{split.scheme}://{split.netloc}".lower() != self.req.origin.lower():
                raise _bad(f"The URL '{url}' of a batch part does not belong to this environment.")
            return split.path, split.query
        path = split.path if split.path.startswith("/") else f"{self.base_path}{split.path}"
        return path, split.query

    def _resolve_body(self, body: bytes, references: dict[str, str]) -> bytes:
        if not references or not body.strip():
            return body
        try:
            document = json.loads(body)
        except ValueError:
            return body  # the inner request reports the malformed JSON itself
        if not isinstance(document, dict):
            return body
        for key, value in document.items():
            if (key.endswith("@odata.bind") or key == "@odata.id") and isinstance(value, str) and value.startswith("$"):
                target = references.get(value[1:])
                if target is None:
                    raise _bad(f"Content-ID Reference: '{value}' does not exist in the batch context.")
                document[key] = target
        return json.dumps(document).encode("utf-8")

    def _execute(self, part: BatchPart, references: dict[str, str]) -> _Answer:
        try:
            path, query = self._resolve_url(part.url, references)
            body = self._resolve_body(part.body, references)
        except WebApiError as error:
            self.operations.append((part.method, part.url, error.status))
            return _Answer(EmuResponse.json(error.status, error.body(), {"OData-Version": "4.0"}), part.content_id)
        inner = EmuRequest(part.method, path, query, part.headers, body, self.req.origin)
        response = self.dispatch(inner)
        self.operations.append((part.method, path, response.status))
        return _Answer(response, part.content_id)


def _render_part(answer: _Answer) -> str:
    response = answer.response
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if answer.content_id is not None:
        lines.append(f"Content-ID: {answer.content_id}")
    phrase = http.HTTPStatus(response.status).phrase
    lines += ["", f"HTTP/1.1 {response.status} {phrase}"]
    headers = dict(response.headers)
    headers.setdefault("OData-Version", "4.0")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return "\r\n".join(lines) + "\r\n\r\n" + response.body.decode("utf-8") + "\r\n"


def _render(answers: list[_Answer | list[_Answer]], boundary: str) -> str:
    out: list[str] = []
    for answer in answers:
        if isinstance(answer, list) and not (len(answer) == 1 and answer[0].response.status >= 400):
            inner = f"changesetresponse_{uuid.uuid4()}"
            out.append(f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={inner}\r\n\r\n")
            out.extend(f"--{inner}\r\n{_render_part(a)}" for a in answer)
            out.append(f"--{inner}--\r\n")
        else:
            single = answer[0] if isinstance(answer, list) else answer
            out.append(f"--{boundary}\r\n{_render_part(single)}")
    out.append(f"--{boundary}--\r\n")
    return "".join(out)
