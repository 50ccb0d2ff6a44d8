"""The OpenAPI 3.0 document of the gateway, generated from the code: the API's route table
(api.api_table, api.SESSION_ROUTES: method, path, least role, models), its pydantic models
(models.py), the ocpp package's OCPP 1.6 JSON schemas for what the stations answer to
commands, and the pages below. Served at /api/openapi.json; made once per process."""
import json
import os

import ocpp

from . import api, models, otaweb

_OCPP_SCHEMAS = os.path.join(os.path.dirname(ocpp.__file__), "v16", "schemas")
_REF = "#/components/schemas/{model}"
_TEXT = {"text/plain": {"schema": {"type": "string"}}}
_HTML = {"text/html": {"schema": {"type": "string"}}}
_ID = {"name": "id", "in": "path", "required": True, "description": "Station id (the last part of its OCPP URL).",
       "schema": {"type": "string", "maxLength": 64}, "example": "CP-1"}
# path parameters besides {id}: (description, schema, example)
_PATH_PARAMS = {
    "version": ("A release's version (docs/ota.md).", {"type": "string", "pattern": "^[A-Za-z0-9._+-]{1,32}$"},
                "0.2.0"),
    "file": ("A file of the release: manifest.json, manifest.sig or one the manifest lists.",
             {"type": "string", "maxLength": 64}, "manifest.json"),
    "name": ("A diagnostics file name.", {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,80}$"},
             "CP-1-20260101T100000Z.log"),
    "rid": ("A rollout id.", {"type": "string", "pattern": "^[0-9]{1,10}$"}, "1"),
    "tag": ("An id tag.", {"type": "string", "minLength": 1, "maxLength": 20}, "TAG1"),
    "group": ("A load group's name.", {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$"}, "garage"),
    "reservation": ("A reservation id (given by the gateway).", {"type": "string", "pattern": "^[0-9]{1,10}$"}, "1"),
}


def _path_params(path):
    return [{"name": n, "in": "path", "required": True, "description": d, "schema": sch, "example": ex}
            for n, (d, sch, ex) in _PATH_PARAMS.items() if "{%s}" % n in path]


_ERRORS = {
    400: "The body or a parameter is wrong; the message says which and why.",
    401: "No credentials, or wrong ones: send Authorization: Bearer <token>, or sign in on the dashboard.",
    403: "The token's role does not allow this call, or a write with the session cookie lacks X-CSRF-Token.",
    404: "No station with this id is registered.",
    408: "The body did not arrive in time.",
    409: "The station is already registered, or (commands) not connected; a release already stored.",
    413: "The body is too large.",
    415: "A body that is not Content-Type: application/json.",
    429: "Too many wrong credentials from this address: wait (Retry-After).",
    502: "The station answered with a CALLERROR (code and details), or an answer that fails the schema.",
    503: "Too many live streams are open (Retry-After).",
    504: "The station did not answer in time.",
}


def oas30(schema):
    """A pydantic (JSON Schema 2020-12) or ocpp (draft 4) schema as OpenAPI 3.0 has it:
    Optional[X] as X with `nullable`, no titles or ids, `const` as a one-value enum."""
    if isinstance(schema, list):
        return [oas30(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    s = {k: ({n: oas30(p) for n, p in v.items()} if k in ("properties", "$defs") else oas30(v))
         for k, v in schema.items() if k not in ("title", "$schema", "id")}
    if k_any := s.get("anyOf"):
        rest = [x for x in k_any if x != {"type": "null"}]
        if len(rest) == 1 and len(rest) < len(k_any):
            del s["anyOf"]
            inner = rest[0]
            if "$ref" in inner:
                s["allOf"] = [inner]
            else:
                s.update(inner)
            s["nullable"] = True
            if "enum" in s and s.get("default", 0) is None:
                s["enum"] = s["enum"] + [None]
    if "const" in s:
        s["enum"] = [s.pop("const")]
    if "properties" in s and s.get("additionalProperties") is None and "type" not in s:
        s["type"] = "object"
    return s


class _Doc:
    def __init__(self):
        self.schemas = {}

    def ref(self, model):
        """A $ref to `model` (a models class, [class], or "ocpp:<Call>" for a station's answer)."""
        if isinstance(model, list):
            return {"type": "array", "items": self.ref(model[0])}
        if isinstance(model, str) and model.startswith("ocpp:"):
            name = model[5:] + "Response"
            if name not in self.schemas:
                with open(os.path.join(_OCPP_SCHEMAS, name + ".json")) as f:
                    self.schemas[name] = oas30(json.load(f))
            return {"$ref": _REF.format(model=name)}
        if model.__name__ not in self.schemas:
            s = model.model_json_schema(ref_template=_REF)
            for name, d in s.pop("$defs", {}).items():
                self.schemas.setdefault(name, oas30(d))
            self.schemas[model.__name__] = oas30(s)
        return {"$ref": _REF.format(model=model.__name__)}

    def error(self, status, model=models.Error):
        return {"description": _ERRORS[status], "content": {"application/json": {"schema": self.ref(model)}}}

    def operation(self, rt):
        op = {"tags": [rt.tag], "operationId": (rt.method.lower() + "_" + rt.path.strip("/").replace(
            "/", "_").replace("{", "").replace("}", "").replace("-", "_")), "summary": rt.summary}
        prm = ([_ID] if "{id}" in rt.path else []) + _path_params(rt.path)
        prm += [{"name": n, "in": "query", "required": False, "schema": sch, "description": d}
                for n, sch, d in rt.params]
        if prm:
            op["parameters"] = prm
        if rt.role:
            op["description"] = "Needs a token (or dashboard session) with role %s or above." % rt.role
        if rt.body is not None:
            c = {"schema": self.ref(rt.body)}
            if rt.example is not None:
                c["example"] = rt.example
            op["requestBody"] = {"required": rt.method == "POST" and rt.tag != "commands" and bool(rt.example),
                                 "content": {"application/json": c}}
            for media in rt.raw_body:
                op["requestBody"]["content"][media] = {"schema": {"type": "string", "format": "binary"}}
        if rt.media == "application/json":
            content = {"application/json": {"schema": self.ref(rt.answer)}}
        else:
            content = {rt.media: {"schema": self.ref(rt.answer) if rt.answer else {"type": "string"}}}
        answers = {str(rt.status): {"description": "OK" if rt.status == 200 else "Created", "content": content}}
        cmd = rt.tag == "commands" or rt.path.endswith(("/update", "/diagnostics")) and rt.method == "POST"
        for st in sorted(set(rt.errors) | ({401, 403} if rt.role else set()) |
                         ({404} if "{id}" in rt.path else set()) | ({401} if rt.path == "/api/session" else set())):
            answers[str(st)] = self.error(st, models.CommandError if cmd and st in (409, 502, 504) else models.Error)
        op["responses"] = answers
        if rt.role:
            op["security"] = [{"apiToken": []}, {"session": []}]
        return op


def _pages(doc):
    health = doc.ref(models.Health)
    fields_ = [{"name": "api_key", "in": "query", "schema": {"type": "string"},
                "description": "The station's ThingSpeak write key (also key, or the X-THINGSPEAKAPIKEY header)."}]
    from .readings import THINGSPEAK_FIELDS
    for n, key, _l, _u in THINGSPEAK_FIELDS:
        fields_.append({"name": "field%d" % n, "in": "query", "schema": {"type": "number"}, "description": key})
    fields_.append({"name": "created_at", "in": "query", "schema": {"type": "string", "format": "date-time"},
                    "description": "When the reading was taken (ISO 8601; default: now)."})
    ingest_answers = {"200": {"description": "Stored: the body is the reading's seq.", "content": _TEXT},
                      "400": {"description": "No or bad fields, or no api_key.", "content": _TEXT},
                      "401": {"description": "Unknown api_key.", "content": _TEXT}}
    form = {"api_key": "WRITEKEY", "field1": 21.5, "field3": 6.25}

    def ingest(method, path):
        op = {"tags": ["ingest"], "operationId": "ingest_%s_%s" % (method, path.strip("/").replace(".", "_")),
              "summary": "ThingSpeak-style write (%s)" % ("query string" if method == "get" else "form or JSON body"),
              "parameters": fields_, "responses": ingest_answers}
        if method == "post":
            op["requestBody"] = {"content": {"application/json": {"schema": {"type": "object"}, "example": form},
                                             "application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}
        return op

    station = {"name": "Authorization", "in": "header", "required": False, "schema": {"type": "string"},
               "description": "HTTP Basic: the station id and its OCPP password (or the station's client certificate "
                              "over https, security profile 3). Not needed under --auth none."}
    refused = {"401": {"description": "No station credentials, or wrong ones.", "content": {
                   "application/json": {"schema": doc.ref(models.Error)}}},
               "403": {"description": "The station is not accepted, or (diagnostics) the path names another station.",
                       "content": {"application/json": {"schema": doc.ref(models.Error)}}},
               "429": {"description": "Too many failed attempts from this address.",
                       "content": {"application/json": {"schema": doc.ref(models.Error)}}}}
    fw = {"tags": ["firmware"], "operationId": "stationFetchesRelease",
          "summary": "A station fetches a file of a stored release (docs/ota.md); station credentials",
          "parameters": _path_params("/{version}/{file}") + [station],
          "responses": dict({"200": {"description": "The file (Content-Length set).", "content": {
              "application/json": {"schema": {"type": "object"}},
              "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
              "404": doc.error(404)}, **refused)}
    diag = {"tags": ["firmware"], "operationId": "stationUploadsDiagnostics",
            "summary": "A station uploads its diagnostics file (GetDiagnostics, docs/ota.md), at most %d bytes; "
                       "its own credentials" % 1048576,
            "parameters": [_ID] + _path_params("/{name}") + [station],
            "requestBody": {"content": {"text/plain": {"schema": {"type": "string"}}}},
            "responses": dict({"201": {"description": "Stored.", "content": {"application/json": {
                "schema": doc.ref(models.DiagnosticsFileStored)}}},
                "400": doc.error(400), "404": doc.error(404), "408": doc.error(408), "413": doc.error(413)},
                **refused)}
    page = {"tags": ["dashboard"], "responses": {"200": {"description": "The dashboard (one page).", "content": _HTML}}}
    return {
        "/": {"get": dict(page, operationId="dashboard", summary="Dashboard: every station")},
        "/index.html": {"get": dict(page, operationId="dashboardIndex", summary="Dashboard: every station")},
        "/station/{id}": {"get": dict(page, operationId="dashboardStation", summary="Dashboard: one station",
                                      parameters=[_ID])},
        "/firmware": {"get": dict(page, operationId="dashboardFirmware",
                                  summary="Dashboard: releases and staged rollouts")},
        "/id-tags": {"get": dict(page, operationId="dashboardIdTags",
                                 summary="Dashboard: the id tags (add, edit, block, CSV import and export)")},
        "/load-groups": {"get": dict(page, operationId="dashboardLoadGroups",
                                     summary="Dashboard: the load groups (limit, allocation, measured current)")},
        "/static/{file}": {"get": {"tags": ["dashboard"], "operationId": "staticFile",
                                   "summary": "The dashboard's files (app.js, style.css)",
                                   "parameters": [{"name": "file", "in": "path", "required": True,
                                                   "schema": {"type": "string"}, "example": "app.js"}],
                                   "responses": {"200": {"description": "The file.",
                                                         "content": {"*/*": {"schema": {"type": "string"}}}},
                                                 "404": doc.error(404)}}},
        "/healthz": {"get": {"tags": ["operations"], "operationId": "healthz",
                             "summary": "Health (no credentials needed): 503 when the store cannot write",
                             "responses": {"200": {"description": "OK", "content": {"application/json": {
                                 "schema": health}}}, "503": {"description": "The store cannot write (why: "
                                                              "store_error).", "content": {"application/json": {
                                                                  "schema": health}}}}}},
        "/metrics": {"get": {"tags": ["operations"], "operationId": "metrics",
                             "summary": "Prometheus metrics (prometheus_client's text format); role read",
                             "security": [{"apiToken": []}, {"session": []}],
                             "responses": {"200": {"description": "Metrics.", "content": _TEXT},
                                           "401": doc.error(401)}}},
        "/api/openapi.json": {"get": {"tags": ["operations"], "operationId": "openapi",
                                      "summary": "This document (no credentials needed)",
                                      "responses": {"200": {"description": "OpenAPI 3.0.3", "content": {
                                          "application/json": {"schema": {"type": "object"}}}}}}},
        "/fw/{version}/{file}": {"get": fw},
        "/diag/{id}/{name}": {"put": diag},
        "/update": {m: ingest(m, "/update") for m in ("get", "post")},
        "/update.json": {m: ingest(m, "/update.json") for m in ("get", "post")},
    }


def document():
    doc = _Doc()
    paths = _pages(doc)
    for rt in api.api_table() + otaweb.ota_table() + api.SESSION_ROUTES:
        paths.setdefault(rt.path, {})[rt.method.lower()] = doc.operation(rt)
    return {
        "openapi": "3.0.3",
        "info": {"title": "PicoCharge gateway API", "version": "2.0.0",
                 "description": "The JSON API, dashboard, health, metrics and ingest routes of `picocharge gateway` "
                                "(one port; OCPP 1.6J stations connect to ws://HOST:PORT/ocpp/<station-id> on the "
                                "same port). Every /api call and /metrics need credentials: an API token "
                                "(`Authorization: Bearer <token>`, made with `picocharge gateway token create`) "
                                "whose role (read, operate, admin) allows the call, or the dashboard's session "
                                "cookie with X-CSRF-Token on writes. Errors are JSON objects with an `error` "
                                "message. Generated from the gateway's code (gateway/openapi.py)."},
        "servers": [{"url": "/"}],
        "tags": [{"name": n} for n in ("stations", "commands", "smart charging", "reservations", "local lists", "firmware", "id tags", "export", "ingest", "operations",
                                                "dashboard")],
        "paths": paths,
        "components": {"schemas": doc.schemas, "securitySchemes": {
            "apiToken": {"type": "http", "scheme": "bearer", "description": "An API token of this gateway."},
            "session": {"type": "apiKey", "in": "cookie", "name": "picocharge_session",
                        "description": "The dashboard's session (POST /api/session); writes need X-CSRF-Token."}}},
    }


_cached = None


def document_json():
    global _cached
    if _cached is None:
        _cached = json.dumps(document(), indent=1).encode()
    return _cached
