"""Reading HTTP requests: a body becomes a JSON object, or a 4xx error that says what to fix.

Every JSON endpoint reads its body with :func:`read_json_object`, which checks, in this order:

1. size: at most ``server.max_body_bytes`` (:class:`~fay_core.errors.BodyTooLarge`, 413);
2. charset: absent or UTF-8 (:class:`~fay_core.errors.UnsupportedCharset`, 415);
3. strict UTF-8 decoding, then JSON without ``NaN``/``Infinity`` (:class:`~fay_core.errors.InvalidBody`, 400);
4. integers of at most :data:`MAX_INT_DIGITS` digits (Python refuses to convert longer ones, and no field needs
   them), nesting at most ``server.max_json_depth`` deep;
5. no lone surrogates (``"\\ud800"``) in any string, key or value;
6. the top level is an object.

Lone surrogates are refused, not replaced: they are not text (no UTF-8 encoding exists for them, so the audit
log could not write them), no keyboard or speech recogniser produces them, and replacing them would put words
in the user's mouth that she did not send. A client that sends one has a bug it should hear about.

The public messages name the problem and the limit, never the parser's own text or a server path.
:func:`bearer_token` reads ``Authorization: Bearer <token>`` strictly, and :func:`check_persona_id` refuses
persona ids that cannot be file names before the file system sees them, :func:`plausible_file_path` static file
names.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from .errors import BodyTooLarge, InvalidBody, InvalidPersonaId, UnsupportedCharset

#: the most digits an integer in a request body may have (a 64-bit integer has 19, with its sign 20)
MAX_INT_DIGITS = 20
#: the longest persona id, in UTF-8 bytes (file systems allow 255 per name, ``.yaml`` included)
MAX_PERSONA_ID_BYTES = 128
#: the longest name of one file or folder (most file systems), and of a whole path under a static route
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 1024

_UTF8 = {"utf-8", "utf8"}
_SURROGATE = re.compile("[\ud800-\udfff]")
_PERSONA_ID = re.compile(r"\w[\w.-]*")
# RFC 7235: the scheme is case-insensitive; one space; the token has no spaces (visible ASCII only)
_BEARER = re.compile(r"(?i:bearer) ([\x21-\x7e]+)")


def _int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise InvalidBody(f"body has an integer of more than {MAX_INT_DIGITS} digits")
    return int(digits)


def _constant(name: str) -> Any:
    raise InvalidBody(f"body is not JSON: {name} is not a JSON value")


def _check_tree(value: Any, max_depth: int) -> None:
    """Raise :class:`InvalidBody` if ``value`` nests deeper than ``max_depth`` or holds a lone surrogate.

    Iterative, so a deep value cannot exhaust the stack here either.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise InvalidBody("body has a lone surrogate (e.g. \\ud800) in a string: send valid Unicode text")
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > max_depth:
            raise InvalidBody(f"body is nested more than {max_depth} levels deep")
        if isinstance(item, dict):
            stack.extend((k, depth) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        else:
            stack.extend((v, depth + 1) for v in item)


def parse_json_object(data: bytes, *, max_depth: int) -> dict[str, Any]:
    """``data`` as a JSON object, checked as the module docstring says (steps 3-6)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidBody(f"body is not UTF-8 (invalid byte at offset {exc.start})") from None
    try:
        body = json.loads(text, parse_int=_int, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise InvalidBody(f"body is not JSON (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:  # nested deeper than the decoder's own stack allows
        raise InvalidBody(f"body is nested more than {max_depth} levels deep") from None
    _check_tree(body, max_depth)
    if not isinstance(body, dict):
        raise InvalidBody('body must be a JSON object, e.g. {"text": "..."}')
    return body


def check_charset(request: web.BaseRequest) -> None:
    """Refuse a declared charset other than UTF-8 (415)."""
    charset = request.charset
    if charset is not None and charset.lower() not in _UTF8:
        raise UnsupportedCharset("request charset is not supported: send UTF-8 (Content-Type: application/json)")


async def read_body(request: web.BaseRequest, limit: int) -> bytes:
    """The raw body, at most ``limit`` bytes (413 beyond; the app's ``client_max_size`` enforces it)."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BodyTooLarge(f"request body too large (limit {limit} bytes)") from None


async def read_json_object(request: web.BaseRequest, *, limit: int, max_depth: int) -> dict[str, Any]:
    """The request's body as a JSON object, or the :class:`~fay_core.errors.InvalidRequest` saying why not."""
    check_charset(request)
    return parse_json_object(await read_body(request, limit), max_depth=max_depth)


def bearer_token(header: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>``, or ``None`` unless the header is exactly that."""
    if header is None:
        return None
    match = _BEARER.fullmatch(header)
    return match.group(1) if match else None


def plausible_file_path(path: str) -> bool:
    """Whether ``path`` (relative, ``/``-separated) could name a file: no NUL, names and the whole not too long.

    A static route answers others 404 before the file system fails on them (``ENAMETOOLONG``).
    """
    raw = path.encode("utf-8", "surrogatepass")
    return b"\0" not in raw and len(raw) <= MAX_PATH_BYTES and all(len(n) <= MAX_NAME_BYTES for n in raw.split(b"/"))


def check_persona_id(persona_id: str) -> str:
    """``persona_id`` if it can name a persona file: word characters, ``.`` and ``-``, not starting with ``.``."""
    if not _PERSONA_ID.fullmatch(persona_id) or len(persona_id.encode("utf-8", "surrogatepass")) > \
            MAX_PERSONA_ID_BYTES:
        raise InvalidPersonaId(
            f"'persona' is not a persona id: use a persona file's name without .yaml (letters, digits, '_', '-', "
            f"'.', at most {MAX_PERSONA_ID_BYTES} bytes; see GET /api/personas)"
        )
    return persona_id
