"""The container's health check (deploy/Dockerfile's HEALTHCHECK): GET /healthz of the gateway
in this container; exit 0 when it answers 200, 1 otherwise with the reason on stdout (docker
inspect shows it). It reads the gateway's own settings: PICOCHARGE_GATEWAY_PORT, and
PICOCHARGE_GATEWAY_TLS_CERT for https (its own certificate, on loopback: not verified)."""
import os
import ssl
import sys
import urllib.error
import urllib.request


def main():
    port = os.environ.get("PICOCHARGE_GATEWAY_PORT") or "9000"
    tls = bool(os.environ.get("PICOCHARGE_GATEWAY_TLS_CERT"))
    url = "%s://localhost:%s/healthz" % ("https" if tls else "http", port)
    ctx = None
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=4, context=ctx) as r:
            status, body = r.status, r.read(2000)
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read(2000)
    except (OSError, ValueError) as e:
        print("unhealthy: %s: %s" % (url, e))
        return 1
    if status != 200:
        print("unhealthy: %s answered %d: %s" % (url, status, body.decode("utf-8", "replace")))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
