"""JSON of any depth: orjson first, a codec without recursion when orjson refuses.

CouchDB stores documents nested as deep as its request size allows
(pouchdb-server 4.2.0 takes about 4000 levels), but orjson stops at 255
levels when it serializes and at 1024 when it parses, and the standard
library's json recurses on the C stack up to the recursion limit. One such
document must not stop a phase, so what orjson refuses goes through the
codec below, which keeps its open containers on a list instead of the call
stack. It costs a pure-Python pass, paid only for what orjson refuses, so
the fast path stays orjson's.

The codec is built on the standard library's own pieces for what makes JSON
faithful (``scanstring`` for strings and their escapes, ``NUMBER_RE`` for
numbers, ``encode_basestring_ascii`` for output); only the walk through the
nesting is written here, since no well-kept library serializes without
recursion. It also keeps integers beyond 64 bits exact and writes strings
that are not valid UTF-8 (lone surrogates) as escapes, two more things
orjson refuses to serialize.
"""
import json
import math
import re
from json.decoder import scanstring
from json.encoder import encode_basestring_ascii
from json.scanner import NUMBER_RE

import orjson

JSONDecodeError = json.JSONDecodeError  # orjson's JSONDecodeError is one too

_SPACE = re.compile(r'[ \t\n\r]*')
_LITERALS = (('true', True), ('false', False), ('null', None))


def dumps(obj):
    """``obj`` as JSON bytes; TypeError for what JSON cannot hold."""
    try:
        return orjson.dumps(obj)
    except orjson.JSONEncodeError:
        return _encode(obj).encode('ascii')


def loads(data):
    """The value of the JSON text ``data`` (bytes or str); JSONDecodeError
    (a ValueError) when it is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            data = bytes(data).decode('utf-8')
        except UnicodeDecodeError as e:
            raise JSONDecodeError(f"not UTF-8 ({e.reason})", '', e.start) from None
    return _decode(data)


# -- encoding -------------------------------------------------------------------------

class _Text(str):
    """Output written as it is (punctuation), as opposed to a value to encode."""


def _encode(value):
    out, todo = [], [value]
    while todo:
        item = todo.pop()
        if type(item) is _Text:
            out.append(item)
        elif isinstance(item, dict):
            todo.append(_Text('}'))
            todo.extend(reversed(_members(item)))
            out.append('{')
        elif isinstance(item, (list, tuple)):
            todo.append(_Text(']'))
            todo.extend(reversed(_elements(item)))
            out.append('[')
        else:
            out.append(_scalar_text(item))
    return ''.join(out)


def _members(obj):
    """A dict's keys (with their separators) and values, in order."""
    parts = []
    for index, (key, value) in enumerate(obj.items()):
        if not isinstance(key, str):
            raise TypeError(f"Dict key must be str, not {type(key).__name__}")
        parts.append(_Text((',' if index else '') + encode_basestring_ascii(key) + ':'))
        parts.append(value)
    return parts


def _elements(items):
    parts = []
    for index, value in enumerate(items):
        if index:
            parts.append(_Text(','))
        parts.append(value)
    return parts


def _scalar_text(value):
    if isinstance(value, str):
        return encode_basestring_ascii(value)
    if value is None:
        return 'null'
    if value is True:
        return 'true'
    if value is False:
        return 'false'
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        # as orjson writes them: JSON has no NaN or Infinity
        return float.__repr__(value) if math.isfinite(value) else 'null'
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


# -- decoding -------------------------------------------------------------------------

def _decode(text):
    """Parse ``text`` with the open containers on a list: [container, key
    waiting for its value (objects only)] each."""
    stack = []
    pos = _space(text, 0)
    while True:
        char = text[pos:pos + 1]
        if char == '{':
            pos = _space(text, pos + 1)
            if text.startswith('}', pos):
                value, pos = {}, pos + 1
            else:
                key, pos = _key(text, pos)
                stack.append([{}, key])
                continue
        elif char == '[':
            pos = _space(text, pos + 1)
            if text.startswith(']', pos):
                value, pos = [], pos + 1
            else:
                stack.append([[], None])
                continue
        else:
            value, pos = _scalar(text, pos)
        # A value is complete: add it to its container, closing those that end here.
        while True:
            pos = _space(text, pos)
            if not stack:
                if pos != len(text):
                    raise JSONDecodeError("Extra data", text, pos)
                return value
            frame = stack[-1]
            container = frame[0]
            if isinstance(container, dict):
                container[frame[1]] = value
            else:
                container.append(value)
            char = text[pos:pos + 1]
            if char == ',':
                pos = _space(text, pos + 1)
                if isinstance(container, dict):
                    frame[1], pos = _key(text, pos)
                break
            if char != ('}' if isinstance(container, dict) else ']'):
                raise JSONDecodeError("Expecting ',' delimiter", text, pos)
            stack.pop()
            value, pos = container, pos + 1


def _space(text, pos):
    return _SPACE.match(text, pos).end()


def _key(text, pos):
    """The key at ``pos`` and the position of its value."""
    if not text.startswith('"', pos):
        raise JSONDecodeError("Expecting property name enclosed in double quotes", text, pos)
    key, pos = scanstring(text, pos + 1)
    pos = _space(text, pos)
    if not text.startswith(':', pos):
        raise JSONDecodeError("Expecting ':' delimiter", text, pos)
    return key, _space(text, pos + 1)


def _scalar(text, pos):
    if text.startswith('"', pos):
        return scanstring(text, pos + 1)
    match = NUMBER_RE.match(text, pos)
    if match is not None:
        integer, fraction, exponent = match.groups()
        if fraction or exponent:
            number = float(integer + (fraction or '') + (exponent or ''))
            if not math.isfinite(number):
                raise JSONDecodeError("Number out of range", text, pos)
            return number, match.end()
        try:
            return int(integer), match.end()
        except ValueError:  # more digits than int() converts (sys.set_int_max_str_digits)
            raise JSONDecodeError("Number too long", text, pos) from None
    for literal, value in _LITERALS:
        if text.startswith(literal, pos):
            return value, pos + len(literal)
    raise JSONDecodeError("Expecting value", text, pos)
