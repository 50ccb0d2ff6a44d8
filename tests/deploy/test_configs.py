"""The files in deploy/ checked by the tools' own checkers, each with a broken copy it must
refuse (so that a checker that checks nothing fails here): `haproxy -c`, `nginx -t`, the Compose
Specification's JSON schema (check-jsonschema's vendored copy), Kubernetes' schemas
(kubernetes-validate, offline, strict), hadolint. No image is built: there is no container
builder here; instead the package is built from exactly the files the Dockerfile copies, and
the image's health check script is run against a real gateway.

Besides the schemas: every PICOCHARGE_GATEWAY_* variable the files set is one `picocharge
gateway` reads (a typo would be ignored silently), and no secret is written in them."""
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import paho.mqtt.publish as publish
import pytest
import yaml

from picocharge.cmd_demo import GatewayProcess
from picocharge.procs import stop_process
from picocharge.gateway.cli import gateway as gateway_cmd
from support import tls_certs
from support.broker import Subscriber
from support.gwhttp import TEST_TOKEN
from support.haproxy import DEPLOY, ROOT, check as haproxy_check, nginx_t, render, render_nginx
from support.net import free_port, wait_port

BIN = Path(sys.executable).parent        # the venv's console scripts (check-jsonschema, ...)
K8S = sorted((DEPLOY / "k8s").glob("*.yaml"))
K8S_VERSIONS = ("1.29.0", "1.37.0")      # the oldest Kubernetes still patched when this was written, the newest known


def _tool(name):
    """A checker the test extras install into this environment (pyproject.toml)."""
    exe = BIN / name
    if not exe.exists():
        exe = shutil.which(name)
        if not exe:
            raise RuntimeError("%s is not installed: pip install -e '.[test]' installs it" % name)
    return str(exe)


def _run(argv, cwd=None):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=180, cwd=cwd)
    return p.returncode, p.stdout + p.stderr


def _gateway_envvars():
    return {p.envvar for p in gateway_cmd.params if isinstance(getattr(p, "envvar", None), str)}


def _unknown_envvars(names):
    known = _gateway_envvars()
    return sorted(n for n in names if n.startswith("PICOCHARGE_GATEWAY_") and n not in known)


# --- HAProxy -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["haproxy.cfg", "haproxy-tls-passthrough.cfg"])
def test_haproxy__shipped_configs_pass_haproxy_c(name):
    rc, out = haproxy_check(DEPLOY / name)
    assert rc == 0 and "Configuration file is valid" in out, out
    # the only warnings allowed: the compose service name `gateway`, which only Docker's DNS knows
    warnings = [line for line in out.splitlines() if "[WARNING]" in line or "[ALERT]" in line]
    assert all("could not resolve address 'gateway'" in w for w in warnings), warnings


@pytest.mark.parametrize("name", ["haproxy.cfg", "haproxy-tls-passthrough.cfg"])
def test_haproxy__rendered_for_loopback_passes_without_a_warning(tmp_path, name):
    text = render((DEPLOY / name).read_text(), [("gw1", "127.0.0.1", 9001), ("gw2", "127.0.0.1", 9002)],
                  {8080: free_port(), 8443: free_port(), 8404: free_port()})
    code = [line.strip() for line in text.splitlines() if not line.lstrip().startswith("#")]
    servers = [line for line in code if line.startswith(("server ", "server-template "))]
    assert servers == ["server gw1 127.0.0.1:9001 check", "server gw2 127.0.0.1:9002 check"], servers
    p = tmp_path / name
    p.write_text(text)
    rc, out = haproxy_check(p)
    assert rc == 0 and "[WARNING]" not in out and "[ALERT]" not in out, out


def test_haproxy__a_broken_config_is_refused(tmp_path):
    p = tmp_path / "broken.cfg"
    p.write_text((DEPLOY / "haproxy.cfg").read_text().replace("timeout tunnel 1h", "timeout tunnel forever"))
    rc, out = haproxy_check(p)
    assert rc != 0 and "timeout tunnel" in out, out


def test_haproxy__render_refuses_a_config_without_the_markers():
    with pytest.raises(ValueError, match="gateway servers"):
        render("backend gateways\n    server gw1 gateway:9000 check\n", [("gw1", "127.0.0.1", 1)], {})
    with pytest.raises(ValueError, match="no `timeout nope` line"):
        render((DEPLOY / "haproxy.cfg").read_text(), [], {8080: 1, 8404: 2}, {"nope": "1s"})


# --- nginx -------------------------------------------------------------------------------------

def test_nginx__shipped_config_passes_nginx_t(tmp_path):
    rc, out = nginx_t(DEPLOY / "nginx.conf", tmp_path)
    assert rc == 0 and "test is successful" in out, out
    assert "[warn]" not in out and "[emerg]" not in out, out


def test_nginx__render_keeps_the_shipped_server_options_and_refuses_a_config_without_markers():
    text = render_nginx((DEPLOY / "nginx.conf").read_text(), [9101, 9102], 9100)
    assert "        server 127.0.0.1:9101 max_fails=2 fail_timeout=10s;\n" in text, text
    assert "listen 127.0.0.1:9100;" in text and "127.0.0.1:9001" not in text, text
    with pytest.raises(ValueError, match="gateway servers"):
        render_nginx("upstream g {\n    server 127.0.0.1:1;\n}\n", [1], 2)


def test_nginx__a_broken_config_is_refused(tmp_path):
    p = tmp_path / "broken.conf"
    p.write_text((DEPLOY / "nginx.conf").read_text().replace("proxy_read_timeout 1h;", "proxy_read_timeout;"))
    rc, out = nginx_t(p, tmp_path)
    assert rc != 0 and "proxy_read_timeout" in out, out


# --- Compose -----------------------------------------------------------------------------------

def _compose_check(path):
    return _run([_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)])


def test_compose__passes_the_compose_specification_schema():
    rc, out = _compose_check(DEPLOY / "compose.yaml")
    assert rc == 0, out


def test_compose__a_broken_file_is_refused(tmp_path):
    p = tmp_path / "compose.yaml"
    p.write_text((DEPLOY / "compose.yaml").read_text().replace("    stop_grace_period: 30s",
                                                               "    stop_grace_period: 30s\n    restrat: always"))
    rc, out = _compose_check(p)
    assert rc != 0 and "restrat" in out, out


def test_compose__the_services_and_what_they_are_given():
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    sv = doc["services"]
    assert set(sv) == {"gateway", "haproxy", "postgres", "mosquitto"}, set(sv)
    gw = sv["gateway"]
    assert gw["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}, gw["build"]
    assert gw["deploy"]["replicas"] >= 2 and gw["read_only"] is True, gw
    assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in sv["haproxy"]["volumes"]
    assert "./mosquitto.conf:/mosquitto/config/mosquitto.conf:ro" in sv["mosquitto"]["volumes"]
    assert _unknown_envvars(gw["environment"]) == []
    # secrets only by reference to deploy/.env, which compose refuses to start without
    for svc, key in (("gateway", "PGPASSWORD"), ("gateway", "PICOCHARGE_GATEWAY_API_TOKEN"),
                     ("postgres", "POSTGRES_PASSWORD")):
        assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", sv[svc]["environment"][key]), (svc, key)
    assert ":" not in gw["environment"]["PICOCHARGE_GATEWAY_DB"].split("@")[0].split("//")[1], "password in the URL"
    env = dict(line.split("=", 1) for line in (DEPLOY / "env.example").read_text().splitlines()
               if line and not line.startswith("#"))
    assert env["POSTGRES_PASSWORD"] == "" and env["PICOCHARGE_API_TOKEN"] == "", env
    assert ".env" in (DEPLOY / ".gitignore").read_text().split()


# --- Kubernetes --------------------------------------------------------------------------------

def _k8s_check(paths, version):
    return _run([_tool("kubernetes-validate"), "--strict", "-k", version, *map(str, paths)])


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_k8s__manifests_pass_kubernetes_schemas_strictly(version):
    assert {p.name for p in K8S} == {"gateway.yaml", "ingress.yaml", "postgres.yaml", "mosquitto.yaml"}
    rc, out = _k8s_check(K8S, version)
    assert rc == 0 and "passed" in out and "failed" not in out.lower(), out


def test_k8s__a_misspelt_field_is_refused(tmp_path):
    p = tmp_path / "gateway.yaml"
    p.write_text((DEPLOY / "k8s" / "gateway.yaml").read_text().replace("  replicas: 2", "  replica: 2"))
    rc, out = _k8s_check([p], K8S_VERSIONS[-1])
    assert rc != 0 and "replica" in out, out


def _k8s_docs():
    out = {}
    for p in K8S:
        for d in yaml.safe_load_all(p.read_text()):
            out[(d["kind"], d["metadata"]["name"])] = d
    return out


def test_k8s__the_gateway_runs_unprivileged_with_probes_and_its_settings_by_reference():
    docs = _k8s_docs()
    dep = docs[("Deployment", "picocharge-gateway")]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert dep["spec"]["replicas"] >= 2
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, sc
    assert sc["capabilities"]["drop"] == ["ALL"], sc
    for probe in ("startupProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["path"] == "/healthz", c[probe]
        # the gateway answers /healthz only to a Host it serves
        assert {"name": "Host", "value": "localhost"} in c[probe]["httpGet"]["httpHeaders"], c[probe]
    assert "livenessProbe" in c
    cm = docs[("ConfigMap", "picocharge-gateway")]
    assert c["envFrom"] == [{"configMapRef": {"name": "picocharge-gateway"}}]
    assert _unknown_envvars(list(cm["data"]) + [e["name"] for e in c["env"]]) == []
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
    assert secrets == {"PGPASSWORD": {"name": "picocharge-gateway", "key": "pg-password"},
                       "PICOCHARGE_GATEWAY_API_TOKEN": {"name": "picocharge-gateway", "key": "api-token"}}, secrets
    assert not any(kind == "Secret" for kind, _n in docs), "a Secret is created by the operator, not shipped"
    # the Service selects the Deployment's pods; the Ingress reaches the Service's port
    svc = docs[("Service", "picocharge-gateway")]
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    ing = docs[("Ingress", "picocharge-gateway")]
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "picocharge-gateway", "port": {"name": "http"}}, backend
    assert int(ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 600
    # the URLs in the ConfigMap name the reference PostgreSQL and mosquitto Services
    assert ("Service", "picocharge-postgres") in docs and "@picocharge-postgres:5432/" in cm["data"][
        "PICOCHARGE_GATEWAY_DB"]
    assert ("Service", "picocharge-mosquitto") in docs and "//picocharge-mosquitto:1883" in cm["data"][
        "PICOCHARGE_GATEWAY_MQTT"]


# --- Dockerfile --------------------------------------------------------------------------------

def _hadolint(path):
    return _run([_tool("hadolint"), "--no-color", str(path)])


def test_dockerfile__passes_hadolint():
    rc, out = _hadolint(DEPLOY / "Dockerfile")
    assert rc == 0 and out.strip() == "", out


def test_dockerfile__hadolint_refuses_a_bad_one(tmp_path):
    p = tmp_path / "Dockerfile"
    p.write_text("FROM python:latest\nRUN pip install picocharge\nUSER root\n")
    rc, out = _hadolint(p)
    assert rc != 0 and "DL3007" in out and "DL3002" in out, out


def _dockerfile():
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_dockerfile__non_root_volume_health_check_and_no_secret():
    lines = _dockerfile()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert 'VOLUME ["/data"]' in lines
    assert any(line.startswith("HEALTHCHECK ") and "picocharge-healthcheck.py" in line for line in lines), lines
    envs = " ".join(line for line in lines if line.startswith("ENV "))
    names = re.findall(r"([A-Z_][A-Z0-9_]*)=", envs)
    assert _unknown_envvars(names) == [], names
    assert not re.search(r"PASSWORD|TOKEN|SECRET|KEY", envs), envs


def test_dockerfile__the_files_it_copies_build_the_package(tmp_path):
    """The build stage's COPY lines, done by hand into an empty folder: the wheel builds from them
    and carries the gateway, its migrations and static files, the firmware and the boards. The
    .dockerignore beside the Dockerfile lets each of them into the build context."""
    lines = _dockerfile()
    stage = lines[:next(i for i, line in enumerate(lines[1:], 1) if line.startswith("FROM "))]
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    copied = []
    for line in stage:
        if line.startswith("COPY "):
            srcs = line.split()[1:-1]
            for s in srcs:
                src = ROOT / s.rstrip("/")
                dst = ctx / s.rstrip("/")
                copied.append(s.rstrip("/"))
                if src.is_dir():
                    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    shutil.copy(src, dst)
    assert "gateway" in copied and "pyproject.toml" in copied, copied
    rc, out = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "--wheel-dir", str(tmp_path / "wheels"), str(ctx)])
    assert rc == 0, out
    (whl,) = (tmp_path / "wheels").glob("picocharge-*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    for want in ("picocharge/cli.py", "picocharge/gateway/server.py", "picocharge/gateway/static/index.html",
                 "picocharge/gateway/migrations/postgresql/0001_initial.sql", "picocharge/firmware/main.py",
                 "picocharge/boards/unix/board.py"):
        assert want in names, (want, sorted(names)[:20])
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    for c in copied + ["deploy/healthcheck.py"]:
        assert "!" + c in ignore or "!" + c + "/" in ignore, (c, ignore)


def _healthcheck(env):
    return subprocess.run([sys.executable, str(DEPLOY / "healthcheck.py")], capture_output=True, text=True,
                          timeout=30, env=env)


def test_healthcheck__answers_for_a_running_gateway_and_not_for_a_missing_one(tmp_path):
    base = {"PATH": "/usr/bin:/bin"}
    port = free_port()
    out = _healthcheck(dict(base, PICOCHARGE_GATEWAY_PORT=str(port)))
    assert out.returncode == 1 and out.stdout.startswith("unhealthy: http://localhost:%d/healthz" % port), out
    gw = GatewayProcess(tmp_path / "gw.db", port=port, extra=("--api-token", TEST_TOKEN)).start()
    try:
        out = _healthcheck(dict(base, PICOCHARGE_GATEWAY_PORT=str(port)))
        assert out.returncode == 0 and out.stdout == "", out
    finally:
        gw.stop()


def test_healthcheck__speaks_tls_when_the_gateway_does(tmp_path):
    certs = tls_certs.make(tmp_path / "tls")
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "PICOCHARGE_GATEWAY_PORT": str(port), "PICOCHARGE_GATEWAY_TLS_CERT": str(certs.cert)}
    gw = GatewayProcess(tmp_path / "gw.db", port=port, extra=(
        "--api-token", TEST_TOKEN, "--tls-cert", str(certs.cert), "--tls-key", str(certs.key))).start()
    try:
        out = _healthcheck(env)
        assert out.returncode == 0 and out.stdout == "", out
        out = _healthcheck(dict(env, PICOCHARGE_GATEWAY_TLS_CERT=""))     # plain HTTP to a TLS port
        assert out.returncode == 1 and "unhealthy: http://localhost" in out.stdout, out
    finally:
        gw.stop()


# --- mosquitto ---------------------------------------------------------------------------------

def test_mosquitto__the_shipped_config_runs_a_broker_and_k8s_ships_the_same(tmp_path):
    """deploy/mosquitto.conf loaded by a real mosquitto (its listener on a free loopback port,
    its persistence in tmp_path): a QoS 1 message gets through. mosquitto refuses to start on a
    line it does not know, so this is its config check too. k8s/mosquitto.yaml's ConfigMap
    holds the same settings."""
    shipped = (DEPLOY / "mosquitto.conf").read_text()
    settings = [line for line in shipped.splitlines() if line.strip() and not line.startswith("#")]
    cm = _k8s_docs()[("ConfigMap", "picocharge-mosquitto")]["data"]["mosquitto.conf"]
    assert cm.splitlines() == settings, (cm, settings)
    port = free_port()
    text = shipped.replace("listener 1883\n", "listener %d 127.0.0.1\n" % port).replace(
        "persistence_location /mosquitto/data/", "persistence_location %s/" % tmp_path)
    assert "listener %d 127.0.0.1" % port in text and str(tmp_path) in text, text
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text)
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sub = None
    try:
        try:
            wait_port(port)
        except TimeoutError:
            proc.kill()
            raise AssertionError("mosquitto did not start on deploy/mosquitto.conf: %s" % proc.communicate()[0])
        sub = Subscriber(port, "picocharge/#", client_id="deploy-check")
        publish.single("picocharge/CP-1/telemetry", b'{"seq": 1}', qos=1, hostname="127.0.0.1", port=port)
        got = sub.wait("picocharge/CP-1/telemetry", 1, timeout=10)
        assert got == [({"seq": 1}, False)], got
    finally:
        if sub:
            sub.close()
        stop_process(proc)
