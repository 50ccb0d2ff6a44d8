"""Cheap schema validation of what stations send, with the ocpp package's own JSON schemas.

ocpp validates every payload with jsonschema's Draft4Validator in a thread pool;
that is most of its CPU per message. Here each action's schema is compiled once
into nested Python closures (the OCPP 1.6 schemas use a small subset of draft 4:
type, properties, required, additionalProperties, enum, maxLength, items,
minItems, multipleOf), with the same verdicts and the same error classes as
ocpp's validation, and one rule more: no text may hold U+0000 (PropertyConstraintViolation),
which no database text column takes (PostgreSQL refuses it outright). A schema using anything
else falls back to Draft4Validator.

Why not a maintained validator (issue 10 asked for fastjsonschema, compiled once per action,
if it keeps the throughput): measured on this machine (2 cores, Python 3.11.7, fastjsonschema
2.22.3 compiled with use_formats=False, use_default=False; CPU time per call, median of 40
rounds of 5,000, both in the same process, the MeterValues frame of benchmarks/hotpath.py):

    MeterValues check        ours 9.5 us    fastjsonschema 11.4 us  (+20 %)
    StatusNotification       ours 0.9 us    fastjsonschema 1.2 us
    compiling all 78 1.6 schemas: 122 ms with fastjsonschema (ours: a few ms, lazily per action)

It is slower on the message every station sends most, and its messages and first-failure order
differ from those the tests pin (and stations see in CALLERRORs), so this module stays.

Issue 17 (CPU per message): the 1.6 schemas put `additionalProperties: false` on their enum
strings (MeterValues' context, measurand, unit...), which sent those nodes to the generic checker;
draft 4 applies it to objects only, so they are string nodes now, and an object tests a valid
string property inline instead of calling its checker. The MeterValues check of
benchmarks/hotpath.py: 10.4-11.6 -> 4.6-5.6 us (fastjsonschema, measured again beside it: 13 us). Its
verdicts are checked against jsonschema's Draft4Validator (tests/bench/test_hotpath.py) and
by property-based tests (tests/gateway/test_properties.py).

Issue 17, second step: `accepts` asks jsonschema-rs (the Rust `jsonschema` crate, maintained,
compiled) first, and the checkers above only when it says no. Measured on this machine, the
MeterValues frame of benchmarks/hotpath.py, best of 5 x 20,000: ours 10.5 us, jsonschema-rs
`is_valid` 3.2 us. Its "yes" is taken only where it cannot be laxer than ours: formats are not
checked by either (draft 4 leaves them optional; ours never did), it refuses NaN, 1.0 for an
integer and True for a number as jsonschema's Draft4Validator does, and our one rule more (no
U+0000 in text) is looked for in the frame's text by the caller (csms._handle) before it asks.
Every refusal, its class and its message still come from the checkers above, so stations see the
same CALLERRORs; tests/gateway/test_validate_fast.py pins "jsonschema-rs accepts => ours accepts"
for every request schema a station sends.
"""
import json
import os
import re
from decimal import Decimal

import ocpp
try:
    import jsonschema_rs as _jsonschema_rs
except ImportError:     # pragma: no cover - a dependency; without it every check is ours
    _jsonschema_rs = None
from ocpp.charge_point import remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.exceptions import (FormationViolationError, PropertyConstraintViolationError, ProtocolError,
                             TypeConstraintViolationError)

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


def _compile_generic(s, where="payload"):
    """The reference checker: every keyword tested in a fixed order, for any schema node."""
    t = s.get("type")
    enum = s.get("enum")
    max_len = s.get("maxLength")
    props = {k: _compile_generic(v, k) for k, v in (s.get("properties") or {}).items()}
    required = tuple(s.get("required") or ())
    closed = s.get("additionalProperties") is False
    items = _compile_generic(s["items"], where) if "items" in s else None
    min_items = s.get("minItems")
    mult = s.get("multipleOf")

    def check(v):
        if t is not None and not _is_type(t, v):
            raise _Fail("type", "%r is not of type %r (%s)" % (v, t, where))
        if isinstance(v, str) and "\x00" in v:
            raise _Fail("nul", "%r holds a NUL character (%s): text may not contain U+0000" % (v[:60], where))
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
        if mult is not None and isinstance(v, (int, float, Decimal)) and not isinstance(v, bool):
            # as the ocpp package checks it (the Smart Charging actions parsed with Decimal):
            # 10.6 is a multiple of 0.1, which 10.6 / 0.1 = 105.99999999999999 in floats denies
            if Decimal(str(v)) % Decimal(str(mult)) != 0:
                raise _Fail("multipleOf", "%r is not a multiple of %r (%s)" % (v, mult, where))
    return check


_PY_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool,
             "object": dict, "array": list}


def compile_schema(s, where="payload"):
    """A function v -> None raising _Fail(kind, message) like Draft4Validator would.

    Specialised per node: a node with a type tests only the keywords that apply to that
    type, in the same order as `_compile_generic` (so the same first failure and the same
    message); anything unusual is compiled by `_compile_generic`."""
    t = s.get("type")
    keys = set(s) - {"$schema", "title", "format", "$id", "javaType", "type"}
    if t != "object" and isinstance(s.get("additionalProperties"), bool):
        # draft 4 applies it to objects only: the 1.6 schemas put it on their enum strings
        # (MeterValues' measurand, unit...), which the generic checker tested more slowly
        keys.discard("additionalProperties")
    py = _PY_TYPES.get(t)
    if py is None:
        return _compile_generic(s, where)
    if t == "string" and keys <= {"enum", "maxLength"}:
        enum = s.get("enum")
        enum_set = frozenset(enum) if enum is not None and all(isinstance(e, str) for e in enum) else None
        if enum is not None and enum_set is None:
            return _compile_generic(s, where)
        max_len = s.get("maxLength")

        def check_str(v):
            if not isinstance(v, str):
                raise _Fail("type", "%r is not of type %r (%s)" % (v, t, where))
            if "\x00" in v:    # not in the schemas: no text column (PostgreSQL's above all) takes U+0000
                raise _Fail("nul", "%r holds a NUL character (%s): text may not contain U+0000" % (v[:60], where))
            if enum_set is not None and v not in enum_set:
                raise _Fail("enum", "%r is not one of %r (%s)" % (v, enum, where))
            if max_len is not None and len(v) > max_len:
                raise _Fail("maxLength", "%r is too long (%s: at most %d)" % (v, where, max_len))
        check_str.rule = (enum_set, max_len)     # check_obj tests a valid string inline
        return check_str
    if t in ("integer", "number", "boolean") and not keys:
        def check_scalar(v):
            if not isinstance(v, py) or (t != "boolean" and isinstance(v, bool)):
                raise _Fail("type", "%r is not of type %r (%s)" % (v, t, where))
        return check_scalar
    if t == "object" and keys <= {"properties", "required", "additionalProperties"}:
        props = {k: compile_schema(v, k) for k, v in (s.get("properties") or {}).items()}
        required = tuple(s.get("required") or ())
        closed = s.get("additionalProperties") is False
        # the string properties: a valid value passes here without a call of its checker (a
        # MeterValues frame has six or seven per sampledValue); anything else goes to the checker
        rules = {k: c.rule for k, c in props.items() if hasattr(c, "rule")}

        def check_obj(v):
            if not isinstance(v, dict):
                raise _Fail("type", "%r is not of type %r (%s)" % (v, t, where))
            for k in required:
                if k not in v:
                    raise _Fail("required", "%r is a required property (%s)" % (k, where))
            for k, x in v.items():
                r = rules.get(k)
                if r is not None and x.__class__ is str and "\x00" not in x:
                    enum_set, max_len = r
                    if (enum_set is None or x in enum_set) and (max_len is None or len(x) <= max_len):
                        continue
                c = props.get(k)
                if c is not None:
                    c(x)
                elif closed:
                    raise _Fail("additionalProperties",
                                "Additional properties are not allowed (%r was unexpected)" % k)
        return check_obj
    if t == "array" and keys <= {"items", "minItems"}:
        items = compile_schema(s["items"], where) if "items" in s else None
        min_items = s.get("minItems")

        def check_arr(v):
            if not isinstance(v, list):
                raise _Fail("type", "%r is not of type %r (%s)" % (v, t, where))
            if min_items is not None and len(v) < min_items:
                raise _Fail("minItems", "%r is too short (%s)" % (v, where))
            if items is not None:
                for x in v:
                    items(x)
        return check_arr
    return _compile_generic(s, where)


_cache = {}


def _schema(action, response=False):
    """The ocpp package's 1.6 schema of `action` (its CALLRESULT's with `response`); OSError
    when there is none."""
    with open(os.path.join(_SCHEMAS, action + ("Response" if response else "") + ".json"),
              encoding="utf-8-sig") as f:
        return json.load(f)


def validator(action, response=False):
    key = (action, response)
    fn = _cache.get(key)
    if fn is None:
        schema = _schema(action, response)
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


_quick = {}


def accepts(action, payload):
    """True when jsonschema-rs finds `payload` valid for `action` (a fast "yes"); False means
    "ask request()", which gives the verdict and the error. The caller has made sure the frame
    holds no \\u0000 escape (jsonschema-rs does not know that rule)."""
    fn = _quick.get(action)
    if fn is None:
        if _jsonschema_rs is None:
            return False
        try:
            fn = _jsonschema_rs.Draft4Validator(_schema(action), validate_formats=False).is_valid
        except OSError:         # not a 1.6 action: request() says so
            return False
        _quick[action] = fn
    return fn(payload)


def request(action, payload):
    """Raise the OCPP error ocpp's validation would raise for an invalid payload."""
    try:
        validator(action)(payload)
    except _Fail as e:
        if e.kind in ("type", "maxLength"):
            raise TypeConstraintViolationError(description=e.message)
        if e.kind == "required":
            raise ProtocolError(description=e.message)
        if e.kind == "nul":
            raise PropertyConstraintViolationError(description=e.message)
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


def snake_top(d):
    """camelCase -> snake_case for the top-level keys only: the handler's keyword arguments.
    Nested objects keep the wire's keys (the handlers read sampledValue/sampled_value,
    and every other nested key a station sends is one word, the same in both spellings),
    which saves rebuilding every MeterValues payload."""
    return {_snake_key(k): v for k, v in d.items()}


_CAMEL = {}
_SIMPLE = (str, int, float)


def result_payload(result):
    """A call_result dataclass as the camelCase dict that goes on the wire.

    The answers to a station's usual CALLs (Heartbeat, MeterValues, StatusNotification,
    BootNotification) hold only strings and numbers: their dict is built directly, with
    the camelCase key of each field cached. Anything nested goes through ocpp's own
    serialize_as_dict / remove_nones / snake_to_camel_case."""
    out = {}
    for name in result.__dataclass_fields__:
        v = getattr(result, name)
        if v is None:
            continue
        if not isinstance(v, _SIMPLE):
            return snake_to_camel_case(remove_nones(serialize_as_dict(result)))
        k = _CAMEL.get(name)
        if k is None:
            k = _CAMEL[name] = next(iter(snake_to_camel_case({name: None})))
        out[k] = v
    return out
