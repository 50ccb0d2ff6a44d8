"""Cheap schema validation of what stations send, with the ocpp package's own JSON schemas.

ocpp validates every payload with jsonschema's Draft4Validator in a thread pool;
that is most of its CPU per message. Here each action's schema is compiled once
into nested Python closures (the OCPP 1.6 schemas use a small subset of draft 4:
type, properties, required, additionalProperties, enum, maxLength, items,
minItems, multipleOf), with the same verdicts and the same error classes as
ocpp's validation. A schema using anything else falls back to Draft4Validator.
"""
import json
import os
import re

import ocpp
from ocpp.charge_point import remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.exceptions import (FormationViolationError, ProtocolError, TypeConstraintViolationError)

_SCHEMAS = os.path.join(os.path.dirname(ocpp.__file__), "v16", "schemas")
_SUPPORTED = {"type", "properties", "required", "additionalProperties", "enum", "maxLength",
              "items", "minItems", "multipleOf", "$schema", "title", "format", "$id", "javaType"}


class _Fail(Exception):
    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.message = message


def _is_type(t, v):
    if t == "string":
        return isinstance(v, str)
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    if t == "null":
        return v is None
    return True


def _uses_only_supported(s):
    if isinstance(s, dict):
        for k, v in s.items():
            if k not in _SUPPORTED:
                return False
            if k == "properties":
                if not all(_uses_only_supported(x) for x in v.values()):
                    return False
            elif k == "items" and not _uses_only_supported(v):
                return False
            elif k == "additionalProperties" and not isinstance(v, bool):
                return False
    return True


def compile_schema(s, where="payload"):
    """A function v -> None raising _Fail(kind, message) like Draft4Validator would."""
    t = s.get("type")
    enum = s.get("enum")
    max_len = s.get("maxLength")
    props = {k: compile_schema(v, k) for k, v in (s.get("properties") or {}).items()}
    required = tuple(s.get("required") or ())
    closed = s.get("additionalProperties") is False
    items = compile_schema(s["items"], where) if "items" in s else None
    min_items = s.get("minItems")
    mult = s.get("multipleOf")

    def check(v):
        if t is not None and not _is_type(t, v):
            raise _Fail("type", "%r is not of type %r (%s)" % (v, t, where))
        if enum is not None and v not in enum:
            raise _Fail("enum", "%r is not one of %r (%s)" % (v, enum, where))
        if max_len is not None and isinstance(v, str) and len(v) > max_len:
            raise _Fail("maxLength", "%r is too long (%s: at most %d)" % (v, where, max_len))
        if isinstance(v, dict):
            for k in required:
                if k not in v:
                    raise _Fail("required", "%r is a required property (%s)" % (k, where))
            for k, x in v.items():
                c = props.get(k)
                if c is not None:
                    c(x)
                elif closed:
                    raise _Fail("additionalProperties",
                                "Additional properties are not allowed (%r was unexpected)" % k)
        elif isinstance(v, list):
            if min_items is not None and len(v) < min_items:
                raise _Fail("minItems", "%r is too short (%s)" % (v, where))
            if items is not None:
                for x in v:
                    items(x)
        if mult is not None and isinstance(v, (int, float)) and not isinstance(v, bool):
            q = v / mult
            if q != int(q):
                raise _Fail("multipleOf", "%r is not a multiple of %r (%s)" % (v, mult, where))
    return check


_cache = {}


def validator(action, response=False):
    key = (action, response)
    fn = _cache.get(key)
    if fn is None:
        path = os.path.join(_SCHEMAS, action + ("Response" if response else "") + ".json")
        with open(path, encoding="utf-8-sig") as f:
            schema = json.load(f)
        if _uses_only_supported(schema):
            fn = compile_schema(schema)
        else:  # pragma: no cover - not the case for any 1.6 message a station sends
            from jsonschema import Draft4Validator
            from jsonschema.exceptions import ValidationError
            dv = Draft4Validator(schema)

            def fn(v, dv=dv):
                try:
                    dv.validate(v)
                except ValidationError as e:
                    raise _Fail(e.validator, e.message)
        _cache[key] = fn
    return fn


def request(action, payload):
    """Raise the OCPP error ocpp's validation would raise for an invalid payload."""
    try:
        validator(action)(payload)
    except _Fail as e:
        if e.kind in ("type", "maxLength"):
            raise TypeConstraintViolationError(description=e.message)
        if e.kind == "required":
            raise ProtocolError(description=e.message)
        raise FormationViolationError(description="payload for %s is not valid: %s" % (action, e.message))


_SNAKE = {}
_CAMEL_RE = re.compile(r"(?<!^)(?=[A-Z])")


def _snake_key(k):
    s = _SNAKE.get(k)
    if s is None:
        s = _CAMEL_RE.sub("_", k).lower()
        if len(_SNAKE) < 4096:
            _SNAKE[k] = s
    return s


def snake(d):
    """camelCase keys -> snake_case, recursively (cached per key)."""
    if isinstance(d, dict):
        return {_snake_key(k): snake(v) for k, v in d.items()}
    if isinstance(d, list):
        return [snake(x) for x in d]
    return d


def result_payload(result):
    """A call_result dataclass as the camelCase dict that goes on the wire."""
    return snake_to_camel_case(remove_nones(serialize_as_dict(result)))
