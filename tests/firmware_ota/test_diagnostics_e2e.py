"""GetDiagnostics end to end: the firmware's log ring on flash, the requested window uploaded
by HTTP PUT with the station's credentials, secrets masked, DiagnosticsStatusNotification."""
import json
import re
from datetime import datetime, timedelta, timezone

from ocpp.v16 import call

from support.central import now_iso, validate_outgoing
from support.otasrv import PASSWORD, ota_config, with_test_ca

DS = "DiagnosticsStatusNotification"


async def _ds(cs, status, n, st):
    return await cs.wait_call(DS, n, station=st, timeout=60, pred=lambda m: m[3]["status"] == status)


def _iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def test_diagnostics__window_uploaded_matches_the_log_without_secrets(
        station, ota_central, server, fleet_key):
    cs = await ota_central()
    st = station(ota_config(cs.url, fleet_key[1])).start()
    await cs.wait_call("StatusNotification", 2, station=st)
    # a line that carries a secret: a CALL whose action is the station's password
    await cs.conns[-1].send(json.dumps([2, "leak-1", PASSWORD, {}]))
    await st.aexpect("%s is not implemented" % PASSWORD)
    assert (await cs.call(call.TriggerMessage(requested_message=DS))).status == "Accepted"
    await _ds(cs, "Idle", 1, st)
    start = datetime.now(timezone.utc) - timedelta(minutes=5)
    r = await cs.call(call.GetDiagnostics(location=server.diag_url, retries=1, retry_interval=1,
                                          start_time=_iso(start)))
    assert re.fullmatch(r"CP-1-\d{8}T\d{6}Z\.log", r.file_name), r
    await _ds(cs, "Uploaded", 1, st)
    assert [m[3]["status"] for m in cs.calls(DS)] == ["Idle", "Uploading", "Uploaded"]
    ctype, body = server.uploads["/diag/CP-1/" + r.file_name]
    assert ctype == "text/plain; charset=utf-8", ctype
    text = body.decode()
    lines = text.splitlines()
    assert len(lines) >= 8 and text.endswith("\n"), text
    for line in lines:
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \[\w+\] [DIWE]: ", line), line
        assert line[:20] >= _iso(start)[:19] + "Z", line
    assert lines == sorted(lines, key=lambda x: x[:20]), "oldest first"
    # the uploaded lines are the console's log lines, in order, secrets masked
    console = st.lines
    i = 0
    for line in lines:
        msg = line[21:]
        while i < len(console) and console[i].replace(PASSWORD, "***") != msg:
            i += 1
        assert i < len(console), "uploaded line not in the console (in order): %r" % msg
        i += 1
    for secret in (PASSWORD, fleet_key[1], "wifi-secret-9"):
        assert secret not in text, secret
    assert "[ocpp] I: *** is not implemented" in text, text
    assert any("station CP-1 running" in x for x in lines), text

    # a window in the future: nothing in it, an empty file
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    r2 = await cs.call(call.GetDiagnostics(location=server.diag_url.rstrip("/"), start_time=_iso(later)))
    await _ds(cs, "Uploaded", 2, st)
    assert server.uploads["/diag/CP-1/" + r2.file_name] == ("text/plain; charset=utf-8", b""), server.uploads
    assert validate_outgoing(cs.frames) > 0


async def test_diagnostics__refused_upload_is_retried_then_upload_failed(station, ota_central, server, fleet_key):
    cs = await ota_central()
    st = station(ota_config(cs.url, fleet_key[1])).start()
    await cs.wait_call("StatusNotification", 2, station=st)
    bad = server.diag_url.replace("/diag/CP-1/", "/elsewhere/")     # the server answers 400
    r = await cs.call(call.GetDiagnostics(location=bad, retries=1, retry_interval=1, stop_time=now_iso()))
    assert r.file_name
    await _ds(cs, "UploadFailed", 1, st)
    assert [x for x in server.requests if x[0] == "PUT"] == [("PUT", "/elsewhere/" + r.file_name, 400)] * 2
    assert (await cs.call(call.TriggerMessage(requested_message=DS))).status == "Accepted"
    await _ds(cs, "Idle", 1, st)


async def test_diagnostics__without_a_log_ring_no_file_is_promised(station, ota_central, server, fleet_key):
    cs = await ota_central()
    st = station(ota_config(cs.url, fleet_key[1], diag_kb=0)).start()
    await cs.wait_call("StatusNotification", 2, station=st)
    r = await cs.call(call.GetDiagnostics(location=server.diag_url))
    assert r.file_name is None, r
    await st.aexpect("GetDiagnostics: no log ring (ota.diag_kb 0)")
    assert not (st.flash / "logs").exists() and server.requests == []
    assert validate_outgoing(cs.frames) > 0


async def test_diagnostics__uploaded_over_https_verified_against_the_ca(station, ota_central, tmp_path, fleet_key):
    from support.otasrv import ReleaseServer

    srv = ReleaseServer(tmp_path, {"CP-1": PASSWORD}, tls=True).start()
    try:
        cs = await ota_central()
        st = with_test_ca(station, ota_config(cs.url, fleet_key[1])).start()
        await cs.wait_call("StatusNotification", 2, station=st)
        r = await cs.call(call.GetDiagnostics(location=srv.diag_url))
        await _ds(cs, "Uploaded", 1, st)
        ctype, body = srv.uploads["/diag/CP-1/" + r.file_name]
        assert b"[app] I: station CP-1 running" in body and PASSWORD.encode() not in body, body[:300]
        assert "TLS without verifying" not in st.output(), st.tail()
    finally:
        srv.stop()
