"""schemathesis against the live gateway, from the OpenAPI document it generates: no 5xx, every
answer with a documented status and content type is what the document says (JSON that parses and
matches its schema). The gateway runs as its own process, with the failed-auth slow-down off
(the fuzzer's wrong tokens would otherwise have its address refused with 429 for a minute)."""
import shutil
import subprocess

import pytest

from support.gwhttp import TEST_TOKEN


def test_fuzz__schemathesis_finds_no_server_error_and_no_answer_off_its_schema(tmp_path):
    st = shutil.which("st") or shutil.which("schemathesis")
    if st is None:
        pytest.fail("schemathesis is needed (pip install -e '.[test]')", pytrace=False)
    from picocharge.cmd_demo import GatewayProcess
    gw = GatewayProcess(tmp_path / "gw.db", extra=("--auth", "none", "--thingspeak-url", "",
                                                   "--auth-fail-limit", "0", "--api-token", TEST_TOKEN)).start()
    try:
        gw.api("POST", "/api/stations", {"id": "CP-1", "password": "password-123-4567"})
        out = subprocess.run([st, "run", gw.url + "/api/openapi.json", "-H", "Authorization: Bearer " + TEST_TOKEN,
                              "-c", "not_a_server_error,response_schema_conformance,content_type_conformance",
                              "-n", "25", "--seed", "1", "--phases", "examples,coverage,fuzzing",
                              "--request-timeout", "20"],
                             capture_output=True, text=True, timeout=600, cwd=tmp_path)
    finally:
        gw.stop()
    report = out.stdout[-6000:] + out.stderr[-2000:]
    assert out.returncode == 0, report
    assert " passed" in out.stdout and "failures" not in out.stdout.split("SUMMARY", 1)[-1], report
    assert not [ln for ln in gw.log if "Traceback" in ln], "\n".join(gw.log[-60:])
