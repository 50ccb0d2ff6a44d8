"""The HTTP side of over-the-air updates and diagnostics (docs/ota.md).

Stations: `GET /fw/<version>/<file>` (a stored release's files) and `PUT /diag/<id>/<fileName>`
(a diagnostics upload), each with the station's own credentials as on /ocpp/<id>: HTTP Basic
(station id, OCPP password) or its client certificate (security profile 3), checked by the
gateway's authenticate_station with the same failed-auth slow-down; 401 otherwise. Under
--auth none (demos) they are open as /ocpp/ is.

Operators (the API, roles as api.py): releases (list, add as a tar/zip body, remove), update
one station, request, list and download diagnostics, staged rollouts (rollouts.py).
"""
import asyncio
import base64
import binascii
import hashlib
import hmac
import io
import json
import logging
import zipfile

from aiohttp import web

from . import auth, diagnostics, models, releases, rollouts, store as st
from .api import Route, _body, _handler, authorise
from .commands import CommandError
from .httputil import error, json_response
from .logonce import LogOnce
from .readings import _ts

log = logging.getLogger(__name__)
_ONCE = LogOnce(log)    # a board retrying with a wrong password: one line a minute, with the count

STATION_PATHS = (("GET", "/fw/{version}/{file}"), ("PUT", "/diag/{id}/{name}"))
DIAG_TIMEOUT = 120.0    # seconds a diagnostics upload may take (1 MiB from a board on slow Wi-Fi)
_UNAUTHORISED = ("station credentials required: HTTP Basic with the station id and its OCPP password, or the "
                 "station's client certificate (docs/ota.md)")


def _refuse(status, message, basic=False):
    h = {"WWW-Authenticate": 'Basic realm="PicoCharge OCPP", charset="UTF-8"'} if basic else None
    return error(status, message, h)


async def station_of(gw, request, path_id=None):
    """(station id, None) for a request carrying a station's credentials, else (None, the answer).
    `path_id`: the station id the path names, which must be the authenticated one."""
    s = gw.settings
    peer = request.remote or ""
    keys = [("ocpp", peer)]
    wait = gw.throttle.blocked(*keys)
    if wait:
        return None, _refuse(429, "too many failed attempts from this address: try again in %d s" % (int(wait) + 1))
    cert = auth.peer_certificate(request.transport)
    authz = request.headers.get("Authorization")
    sid = None
    if cert:
        sid = auth.certificate_cn(cert)
    elif authz and authz.startswith("Basic "):
        try:
            sid = base64.b64decode(authz[6:], validate=True).partition(b":")[0].decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            sid = None
    elif s.auth == "none":
        # --auth none: no station credentials are checked anywhere (demos), as on /ocpp/
        if path_id is None:
            return "(any: --auth none)", None
        sid = path_id
    if sid is None or sid not in gw.stations:
        gw.throttle.failed(*keys)
        why = "no credentials" if sid is None else "unknown station"
        _ONCE.warning("station=? %s %s refused (%s): %s", request.method, request.path[:100], peer, why,
                      key=("fw-refused", peer, why))
        return None, _refuse(401, _UNAUTHORISED, basic=True)
    status, why = await gw.authenticate_station(sid, authz, peer, cert, connecting=False)
    if why:
        _ONCE.warning("station=%s %s %s refused (%s): %s", sid, request.method, request.path[:100], peer, why,
                      key=("fw-refused", sid, why))
        if status == 401:
            return None, _refuse(401, _UNAUTHORISED, basic=True)
        return None, _refuse(status, gw.refusal_text(status))
    if gw.stations[sid]["state"] != "accepted":
        return None, _refuse(403, "station %s is not accepted by the operator" % sid)
    if path_id is not None and path_id != sid:
        _ONCE.warning("station=%s %s %s refused: the path names another station", sid, request.method,
                      request.path[:100], key=("diag-other", sid))
        return None, _refuse(403, "these are station %s's credentials: a station uploads only to /diag/%s/"
                             % (sid, sid))
    return sid, None


def station_routes(gw):
    s = gw.settings

    async def fw(request):
        version, name = request.match_info["version"], request.match_info["file"]
        sid, denied = await station_of(gw, request)
        if denied is not None:
            return denied
        rows = await gw.store.run(st.release_rows, version) if not releases.version_problem(version) else []
        path = releases.file_path(s.db, version, name) if rows else None
        if path is None:
            return error(404, "no file %s in a release %s on this gateway" % (name[:60], version[:40]))
        # the manifest says a download starts; each file at debug (a fleet fetches thousands)
        log.log(logging.INFO if name == releases.MANIFEST else logging.DEBUG, "station=%s fetches %s/%s", sid,
                version, name)
        ctype = "application/json" if name == releases.MANIFEST else "application/octet-stream"
        return web.FileResponse(path, headers={"Content-Type": ctype, "Cache-Control": "no-store"})

    async def diag(request):
        path_id, name = request.match_info["id"], request.match_info["name"]
        sid, denied = await station_of(gw, request, path_id)
        if denied is not None:
            return denied
        why = diagnostics.name_problem(name)
        if why:
            return error(400, "%s: %r" % (why, name[:100]))
        if (request.content_length or 0) > diagnostics.MAX_SIZE:
            r = error(413, "a diagnostics file is at most %d bytes" % diagnostics.MAX_SIZE)
            r.force_close()
            return r
        try:
            size = await diagnostics.receive(s.db, sid, name, request.content, DIAG_TIMEOUT)
        except diagnostics.TooLarge:
            r = error(413, "a diagnostics file is at most %d bytes" % diagnostics.MAX_SIZE)
            r.force_close()
            return r
        except asyncio.TimeoutError:
            r = error(408, "the upload did not arrive within %g s" % DIAG_TIMEOUT)
            r.force_close()
            return r
        log.info("station=%s uploaded diagnostics %s (%d bytes)", sid, name, size)
        return json_response({"name": name, "size": size}, 201)

    return fw, diag


# --- the API -------------------------------------------------------------------------
async def _list_releases(gw, req):
    return json_response([releases.view(r) for r in await gw.store.run(st.release_rows)])


async def add_release(gw, files, key=None):
    """Check and store a bundle ({name: bytes}); its view. BundleError, or FileExistsError."""
    manifest = releases.check_bundle(files, key)
    if await gw.store.run(st.release_rows, manifest["version"]):
        raise FileExistsError(manifest["version"])
    row = await asyncio.get_running_loop().run_in_executor(None, releases.store_files, gw.settings.db, files,
                                                           manifest)
    try:
        await gw.store.run(st.add_release, row)
    except KeyError:
        raise FileExistsError(manifest["version"])
    log.info("release %s added (%d files, %d bytes, key %s)", row["version"], row["files"], row["size"],
             row["key_id"])
    return releases.view(row)


async def _post_release(request, gw):
    denied = await authorise(gw, request, "admin")
    if denied is not None:
        return denied
    if (request.content_length or 0) > releases.MAX_ARCHIVE * 2:
        r = error(413, "a release archive is at most %d bytes" % releases.MAX_ARCHIVE)
        r.force_close()
        return r
    body = bytearray()
    try:
        async with asyncio.timeout(gw.settings.body_timeout):
            async for chunk in request.content.iter_chunked(65536):
                body += chunk
                if len(body) > releases.MAX_ARCHIVE * 2:
                    r = error(413, "a release archive is at most %d bytes" % releases.MAX_ARCHIVE)
                    r.force_close()
                    return r
    except asyncio.TimeoutError:
        r = error(408, "the body did not arrive within %g s (--body-timeout)" % gw.settings.body_timeout)
        r.force_close()
        return r
    body = bytes(body)
    try:
        if request.content_type == "application/json":
            try:
                d = json.loads(body)
                archive = base64.b64decode(d["archive_base64"], validate=True)
            except (ValueError, TypeError, KeyError, binascii.Error, RecursionError):
                return error(400, 'a JSON body is {"archive_base64": "<the tar or zip archive in base64>"}')
        else:
            archive = body
        if not archive:
            return error(400, "send the release as a tar or zip archive body (tar -cf - VERSION/), or as JSON "
                              '{"archive_base64": ...}')
        out = await add_release(gw, releases.read_archive(archive))
    except releases.BundleError as e:
        return error(400, "release refused: %s" % e)
    except FileExistsError as e:
        return error(409, "release %s is already on this gateway: remove it first (DELETE /api/releases/%s)"
                     % (e.args[0], e.args[0]))
    return json_response(out, 201)


async def _delete_release(gw, req, version):
    if not await gw.store.run(st.release_rows, version):
        return error(404, "no release %r on this gateway" % version[:40])
    busy = await gw.store.run(st.rollouts_using, version)
    if busy:
        return error(409, "release %s is being rolled out (rollout %s): cancel it first (POST /api/rollouts/%d/cancel)"
                     % (version, ", ".join(map(str, busy)), busy[0]))
    await gw.store.run(st.remove_release, version)
    await asyncio.get_running_loop().run_in_executor(None, releases.delete_files, gw.settings.db, version)
    log.info("release %s removed", version)
    return json_response({"version": version, "removed": True})


def _when(b, key):
    v = b.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise ValueError("%s must be an ISO 8601 time (e.g. 2026-01-31T12:00:00Z)" % key)
    try:
        return _ts(v)
    except ValueError:
        raise ValueError("%s %r is not ISO 8601 (e.g. 2026-01-31T12:00:00Z)" % (key, v[:40]))


def _count(b, key, hi):
    v = b.get(key)
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi):
        raise ValueError("%s must be an integer 0..%d" % (key, hi))
    return v


def _known(b, allowed):
    extra = sorted(set(b) - set(allowed))
    if extra:
        raise ValueError("%s: not a field here (the fields: %s)" % (", ".join(extra)[:100], ", ".join(allowed)))


async def _update(gw, req, id):
    b = _body(req)
    _known(b, ("version", "retrieve_date", "retries", "retry_interval"))
    version = b.get("version")
    if releases.version_problem(version) or not await gw.store.run(st.release_rows, version):
        raise ValueError("version %r is not a release on this gateway (GET /api/releases; add one with POST "
                         "/api/releases)" % (str(version)[:40] if version is not None else None,))
    when = _when(b, "retrieve_date")
    try:
        url, when, answer = await rollouts.send_update(gw, id, version, when, _count(b, "retries", 100),
                                                       _count(b, "retry_interval", 86400))
    except CommandError as e:
        return json_response(dict({"error": e.message}, **e.extra), e.status)
    return json_response({"location": url, "retrieve_date": when, "answer": answer})


async def _firmware_history(gw, req, id):
    return json_response(await gw.store.run(st.ota_history, id))


async def _list_diagnostics(gw, req, id):
    return json_response(diagnostics.listing(gw.settings.db, id))


async def _get_diagnostics_file(gw, req, id, name):
    path = diagnostics.path_of(gw.settings.db, id, name)
    if path is None:
        return error(404, "no diagnostics file %r of station %s (GET /api/stations/%s/diagnostics lists them)"
                     % (name[:80], id, id))
    return web.FileResponse(path, headers={"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store",
                                           "Content-Disposition": 'attachment; filename="%s"' % name,
                                           "X-Content-Type-Options": "nosniff"})


async def _request_diagnostics(gw, req, id):
    b = _body(req)
    _known(b, ("start_time", "stop_time", "retries", "retry_interval"))
    start, stop = _when(b, "start_time"), _when(b, "stop_time")
    if start and stop and stop < start:
        raise ValueError("stop_time is before start_time")
    kw = {k: v for k, v in (("start_time", start), ("stop_time", stop), ("retries", _count(b, "retries", 100)),
                            ("retry_interval", _count(b, "retry_interval", 86400))) if v is not None}
    try:    # wherever the station is connected (rollouts.send_ota)
        out = await rollouts.send_ota(gw, id, "GetDiagnostics", kw)
        url, answer = out["location"], out["answer"]
    except CommandError as e:
        return json_response(dict({"error": e.message}, **e.extra), e.status)
    log.info("station=%s GetDiagnostics sent: %s", id, answer)
    return json_response({"location": url, "answer": answer})


async def _list_rollouts(gw, req):
    return json_response(await gw.rollouts.list())


def _rid(rid):
    try:
        n = int(rid)
    except ValueError:
        n = 0
    if not 1 <= n <= 2 ** 31:
        raise ValueError("a rollout id is a positive integer")
    return n


async def _post_rollout(gw, req):
    b = _body(req)
    _known(b, ("version", "stations", "wave", "max_failures", "timeout"))
    version = b.get("version")
    if releases.version_problem(version):
        raise ValueError("version: " + releases.version_problem(version))
    rid = await gw.rollouts.create(version, b.get("stations"), b.get("wave", 1), b.get("max_failures", 1),
                                   b.get("timeout", rollouts.DEFAULT_TIMEOUT))
    return json_response(await gw.rollouts.get(rid), 201)


async def _get_rollout(gw, req, rid):
    out = await gw.rollouts.get(_rid(rid))
    return error(404, "no rollout %s (GET /api/rollouts lists them)" % rid[:20]) if out is None else json_response(out)


async def _cancel_rollout(gw, req, rid):
    out = await gw.rollouts.cancel(_rid(rid))
    return error(404, "no rollout %s (GET /api/rollouts lists them)" % rid[:20]) if out is None else json_response(out)


def example_archive():
    """A small but real release (0.2.0, one main.py) as a zip in base64: the API document's
    example body for POST /api/releases, signed with an all-zero key."""
    main = b"print('PicoCharge 0.2.0')\n"
    manifest = json.dumps({"format": 1, "version": "0.2.0", "board": None, "mpy": None,
                           "key_id": hashlib.sha256(bytes(32)).hexdigest()[:8], "created": "2026-11-30T18:00:00Z",
                           "files": [{"name": "main.py", "size": len(main),
                                      "sha256": hashlib.sha256(main).hexdigest()}]},
                          separators=(",", ":")).encode()
    sig = hmac.new(bytes(32), manifest, hashlib.sha256).hexdigest().encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in (("manifest.json", manifest), ("manifest.sig", sig), ("main.py", main)):
            z.writestr(zipfile.ZipInfo("0.2.0/" + name, (2026, 11, 30, 18, 0, 0)), data)
    return base64.b64encode(buf.getvalue()).decode()


_ARCHIVES = ("application/x-tar", "application/gzip", "application/zip", "application/octet-stream")


def ota_table():
    """[api.Route] of the operators' side: releases, updates, diagnostics, rollouts."""
    return [
        Route("GET", "/api/releases", _list_releases, "read", "firmware", "The releases stored on the gateway",
              [models.Release]),
        Route("POST", "/api/releases", None, "admin", "firmware",
              "Add a release: its bundle folder (docs/ota.md) as a tar (plain or gzip) or zip body, or as JSON "
              "{archive_base64}; checked against its manifest before it is stored", models.Release, 201,
              models.ReleaseUpload, {"archive_base64": example_archive()}, (400, 409, 413), raw_body=_ARCHIVES),
        Route("DELETE", "/api/releases/{version}", _delete_release, "admin", "firmware",
              "Remove a release (not while a rollout of it runs)", models.ReleaseRemoved, errors=(409,)),
        Route("POST", "/api/stations/{id}/update", _update, "operate", "firmware",
              "Send UpdateFirmware with the location of a stored release (retrieveDate now unless given)",
              models.UpdateSent, body=models.Update, example={"version": "0.2.0"}, errors=(400, 409, 415, 502, 504)),
        Route("GET", "/api/stations/{id}/firmware-history", _firmware_history, "read", "firmware",
              "The station's firmware and diagnostics status notifications, newest first (200 at most)",
              [models.OtaEvent]),
        Route("GET", "/api/stations/{id}/diagnostics", _list_diagnostics, "read", "firmware",
              "The diagnostics files the station uploaded, newest first", [models.DiagnosticsFile]),
        Route("POST", "/api/stations/{id}/diagnostics", _request_diagnostics, "operate", "firmware",
              "Send GetDiagnostics: the station uploads its log to the gateway; its answer names the file",
              models.DiagnosticsSent, body=models.DiagnosticsRequest, example={},
              errors=(400, 409, 415, 502, 504)),
        Route("GET", "/api/stations/{id}/diagnostics/{name}", _get_diagnostics_file, "read", "firmware",
              "Download one diagnostics file", None, media="text/plain"),
        Route("GET", "/api/rollouts", _list_rollouts, "read", "firmware", "The rollouts, newest first",
              [models.Rollout]),
        Route("POST", "/api/rollouts", _post_rollout, "operate", "firmware",
              "Start a staged rollout of a release: waves of `wave` stations, the next when each of this one "
              "reported Installed and booted the version, stopped at `max_failures` failed stations",
              models.Rollout, 201, models.NewRollout, {"version": "0.2.0", "stations": ["CP-1"], "wave": 1},
              (400, 415)),
        Route("GET", "/api/rollouts/{rid}", _get_rollout, "read", "firmware", "One rollout, with each station's "
              "progress", models.Rollout, errors=(400, 404)),
        Route("POST", "/api/rollouts/{rid}/cancel", _cancel_rollout, "operate", "firmware",
              "Cancel a rollout: no further UpdateFirmware is sent", models.Rollout, errors=(400, 404, 415)),
    ]


def add_routes(app, gw):
    r = app.router
    fw, diag = station_routes(gw)
    r.add_get("/fw/{version}/{file}", fw)
    r.add_put("/diag/{id}/{name}", diag)
    for rt in ota_table():
        if rt.fn is None:
            async def post_release(request):
                return await _post_release(request, gw)
            r.add_route(rt.method, rt.path, post_release)
        else:
            r.add_route(rt.method, rt.path, _handler(gw, rt.fn, rt.role, "{id}" in rt.path))

