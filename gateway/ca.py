"""The operator's CA for OCPP security profile 3 (stations authenticate with a TLS client
certificate): make the CA, issue a station's certificate and key, and check a station's
certificate and key before `picocharge provision` puts them on a board.

Made with the `openssl` command (OpenSSL 1.1.1 or later): `cryptography` is only a test
dependency of this project, and every machine that runs a TLS gateway has openssl. All
openssl calls go through `_openssl`, so tests can see them. Keys are EC P-256: the Pico W's
mbedtls signs with one in a fraction of the time an RSA-2048 key takes.

Files: <dir>/ca.crt and <dir>/ca.key (the CA), <out>/<station id>.crt and .key (a
station); all created 0600 (the keys are secrets, and nothing needs the certificates
world-readable). Nothing existing is overwritten unless asked (`force`).
"""
import os
import secrets
import subprocess
import tempfile
from pathlib import Path

from picocharge.firmware import fields

from .auth import write_private

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
_STATION_EXT = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")


class CaError(Exception):
    """A CA or certificate operation failed; the message says what and what to do."""


def _openssl(args, data=None):
    """stdout (bytes) of `openssl ARGS` fed `data`; CaError with openssl's own reason."""
    try:
        out = subprocess.run(["openssl"] + list(args), input=data, capture_output=True, timeout=60)
    except FileNotFoundError:
        raise CaError("the openssl command is not installed (apt install openssl, brew install openssl)")
    except subprocess.TimeoutExpired:
        raise CaError("openssl %s did not finish within 60 s" % args[0])
    if out.returncode != 0:
        lines = [ln for ln in out.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        raise CaError("openssl %s failed: %s" % (args[0], "; ".join(lines[-3:]) or "exit %d" % out.returncode))
    return out.stdout


def _new_key():
    return _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])


def _refuse_existing(paths, force):
    if force:
        return
    there = [str(p) for p in paths if os.path.exists(p)]
    if there:
        raise CaError("%s already exist%s: keep them, or give --force to replace them (stations with "
                      "certificates from the old ones are then refused)" % (" and ".join(there),
                                                                             "s" if len(there) == 1 else ""))


def init(folder, name="PicoCharge operator CA", days=3650, force=False):
    """Make the CA in `folder`: (ca.crt path, ca.key path)."""
    folder = Path(folder)
    crt, key = folder / CA_CERT, folder / CA_KEY
    _refuse_existing((crt, key), force)
    folder.mkdir(parents=True, exist_ok=True)
    write_private(str(key), _new_key().decode())
    pem = _openssl(["req", "-x509", "-new", "-key", str(key), "-sha256", "-days", str(days),
                    "-subj", "/CN=" + name.replace("/", "-"),
                    "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    write_private(str(crt), pem.decode())
    return crt, key


def issue(folder, station_id, out=None, days=825, force=False):
    """A certificate (CN = station_id, client authentication) and key for a station, signed by
    the CA in `folder`: (.crt path, .key path) in `out` (default: the CA's folder)."""
    why = fields.station_id_error(station_id)     # the one rule of every door
    if why:
        raise CaError("station id %r: %s" % (station_id, why))
    folder = Path(folder)
    ca_crt, ca_key = folder / CA_CERT, folder / CA_KEY
    for p in (ca_crt, ca_key):
        if not p.is_file():
            raise CaError("no CA in %s (%s is missing): make one with `picocharge gateway ca init --dir %s`"
                          % (folder, p.name, folder))
    out = Path(out) if out else folder
    crt, key = out / (station_id + ".crt"), out / (station_id + ".key")
    _refuse_existing((crt, key), force)
    out.mkdir(parents=True, exist_ok=True)
    write_private(str(key), _new_key().decode())
    csr = _openssl(["req", "-new", "-key", str(key), "-subj", "/CN=" + station_id])
    with tempfile.NamedTemporaryFile("w", suffix=".ext", delete=False) as ext:
        ext.write(_STATION_EXT)
    try:
        pem = _openssl(["x509", "-req", "-CA", str(ca_crt), "-CAkey", str(ca_key), "-sha256",
                        "-days", str(days), "-set_serial", "0x" + secrets.token_hex(16),
                        "-extfile", ext.name], csr)
    finally:
        os.unlink(ext.name)
    write_private(str(crt), pem.decode())
    return crt, key


def _form(data):
    return "DER" if data[:1] == b"\x30" else "PEM"


def station_files(cert, key, station_id=None):
    """Check a station's certificate and key files (PEM or DER) before they go to a board:
    both parse, the key is the certificate's, the key has no passphrase, and (given
    station_id) the certificate's CN is that id. Returns {"cn", "not_after", "cert_der",
    "key_der"} (DER is what MicroPython's ssl takes in load_cert_chain); CaError otherwise."""
    try:
        cdata, kdata = Path(cert).read_bytes(), Path(key).read_bytes()
    except OSError as e:
        raise CaError("cannot read %s: %s" % (e.filename, e.strerror or e))
    if b"ENCRYPTED" in kdata[:200]:
        raise CaError("%s is encrypted with a passphrase: a station cannot type one; give the key "
                      "unencrypted (openssl pkey -in %s -out station.key)" % (key, key))
    try:
        cert_der = _openssl(["x509", "-inform", _form(cdata), "-outform", "DER"], cdata)
    except CaError:
        raise CaError("%s is not an X.509 certificate (PEM or DER): give the station's certificate "
                      "(`picocharge gateway ca issue ID` makes one)" % cert)
    try:
        key_der = _openssl(["pkey", "-inform", _form(kdata), "-outform", "DER", "-passin", "pass:"], kdata)
    except CaError:
        raise CaError("%s is not a private key (PEM or DER, unencrypted): give the key that goes with %s"
                      % (key, cert))
    pub_cert = _openssl(["x509", "-inform", "DER", "-noout", "-pubkey"], cert_der)
    pub_key = _openssl(["pkey", "-inform", "DER", "-pubout"], key_der)
    if pub_cert.strip() != pub_key.strip():
        raise CaError("%s is not the key of %s (their public keys differ): give the key issued with "
                      "that certificate" % (key, cert))
    info = _openssl(["x509", "-inform", "DER", "-noout", "-subject", "-enddate", "-nameopt", "RFC2253"],
                    cert_der).decode("utf-8", "replace")
    cn, not_after = None, None
    for line in info.splitlines():
        if line.startswith("subject="):
            cns = [p[3:] for p in line[8:].strip().split(",") if p.strip().startswith("CN=")]
            cn = cns[0].strip() if len(cns) == 1 else None
        elif line.startswith("notAfter="):
            not_after = line[9:].strip()
    if station_id is not None and cn != station_id:
        raise CaError("%s is for %s, not for station %s: the gateway takes a certificate only from the "
                      "station its CN names; issue one with `picocharge gateway ca issue %s`"
                      % (cert, "CN=%s" % cn if cn else "no single CN", station_id, station_id))
    return {"cn": cn, "not_after": not_after, "cert_der": cert_der, "key_der": key_der}
