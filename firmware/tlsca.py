# TLS client contexts for the uplinks (OCPP wss://, MQTT over TLS, ThingSpeak https://), with
# the server's certificate verified against a CA file on flash (config keys ocpp.ca_cert,
# mqtt.ca_cert, thingspeak.ca_cert). Imported only by a station that opens a TLS connection:
# `ssl` costs heap, and a station without TLS does not pay for it.
#
# MicroPython's ssl (mbedtls, unix and rp2 ports alike) takes the CA as DER bytes in
# load_verify_locations(cadata=...); PEM there is refused ("invalid cert"). `picocharge
# provision --ca-cert` writes DER; a PEM file copied by hand is converted here.
#
# OCPP security profile 3: the station presents its own certificate and key (ocpp.client_cert,
# ocpp.client_key) with load_cert_chain, which, like cadata, takes DER only on both ports (PEM:
# "invalid key"/"invalid cert", MicroPython 1.24-1.29); `picocharge provision --client-cert`
# writes DER, PEM is converted here the same way.
import ssl
from binascii import a2b_base64

_BEGIN = b"-----BEGIN "


def read_der(path, what="X.509 certificate"):
    """The first certificate (or key) of a PEM or DER file, as DER bytes. OSError if
    unreadable, ValueError if it is neither."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:1] == b"\x30":  # DER: an ASN.1 SEQUENCE
        return data
    i = data.find(_BEGIN)
    i = data.find(b"-----", i + len(_BEGIN)) if i >= 0 else -1  # the end of "-----BEGIN <label>-----"
    j = data.find(b"-----END", i + 5) if i >= 0 else -1
    if i < 0 or j < 0:
        raise ValueError("%s is not a PEM or DER %s" % (path, what))
    return a2b_base64(data[i + 5:j])


def client(key, ca_path, log, mine=None):
    """An ssl.SSLContext for a client connection. With ca_path (the value of config key
    `key`): the server's certificate must chain to that CA and name the host given as
    server_hostname (SNI and the hostname check). Without: encrypted but not verified, and
    `log` (if given) says so: the caller passes it once per connection, or less.
    mine: (certificate path, key path) the client presents (ocpp.client_cert, .client_key)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if mine:
        sec = key.split(".")[0]
        try:  # read now, not kept in RAM
            ctx.load_cert_chain(read_der(mine[0]), read_der(mine[1], "private key"))
        except (OSError, ValueError) as e:
            raise OSError("%s.client_cert/%s.client_key: cannot load %s and %s (%s): provision them again "
                          "(picocharge provision --client-cert FILE --client-key FILE)" % (
                              sec, sec, mine[0], mine[1], e))
    if not ca_path:
        ctx.verify_mode = ssl.CERT_NONE
        if log:
            log.warn("TLS without verifying the server's certificate (%s not set): anyone on the "
                     "path can read the credentials", key)
        return ctx
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_verify_locations(cadata=read_der(ca_path))  # read now, not kept in RAM
    except (OSError, ValueError) as e:
        raise OSError("%s: cannot load the CA %s (%s)" % (key, ca_path, e))
    return ctx


def refused(key, e):
    """The reason a verifying handshake failed (mbedtls raises ValueError with the reason),
    said for the log: no secret is in it."""
    why = str(e).strip().replace("\n", "; ")
    hint = "check %s and that the host in the URL is the one the certificate names" % key
    if "future" in why:
        hint = "the board's clock is not set (a Pico W starts at 2021-01-01): check that wifi.ntp_host answers"
    return "server certificate refused (%s): %s" % (why, hint)
