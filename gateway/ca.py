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

Revocation: `revoke` records a station's certificate in the CA's database (<dir>/index.txt,
openssl ca's own format) and writes a new CRL, <dir>/ca.crl, signed by the CA; the gateway
reads it with --client-crl and refuses a revoked certificate at the next connection (it reads
the file again when it changes, no restart). A stolen board's certificate is revoked without
touching the other stations.
"""
import logging
import os
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

from picocharge.firmware import fields

from .auth import write_private

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
CA_CRL = "ca.crl"
log = logging.getLogger(__name__)
_STATION_EXT = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")


class CaError(Exception):
    """A CA or certificate operation failed; the message says what and what to do."""


def _openssl(args, data=None, want=None):
    """stdout (bytes) of `openssl ARGS` fed `data`; CaError with openssl's own reason. `want`: a
    text that must be in what it printed (`openssl crl -CAfile` exits 0 on "verify failure")."""
    try:
        out = subprocess.run(["openssl"] + list(args), input=data, capture_output=True, timeout=60)
    except FileNotFoundError:
        raise CaError("the openssl command is not installed (apt install openssl, brew install openssl)")
    except subprocess.TimeoutExpired:
        raise CaError("openssl %s did not finish within 60 s" % args[0])
    if out.returncode != 0:
        lines = [ln for ln in out.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        raise CaError("openssl %s failed: %s" % (args[0], "; ".join(lines[-3:]) or "exit %d" % out.returncode))
    if want is not None and want not in (out.stdout + out.stderr).decode("utf-8", "replace"):
        said = (out.stderr or out.stdout).decode("utf-8", "replace").strip().splitlines()
        raise CaError("openssl %s: %s" % (args[0], said[-1] if said else "no %r" % want))
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
    for stale in ("index.txt", "index.txt.attr", "crlnumber", CA_CRL):     # a new CA: nothing revoked yet
        if (folder / stale).exists():
            os.unlink(folder / stale)
    write_crl(folder)
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


# --- revocation ------------------------------------------------------------------------------

def _ca_config(folder):
    """A minimal `openssl ca` configuration for the CA in `folder` (its database and CRL number
    live there): the path of a temporary file the caller removes."""
    folder = Path(folder).resolve()
    db, num = folder / "index.txt", folder / "crlnumber"
    if not db.exists():
        write_private(str(db), "")
    if not num.exists():
        write_private(str(num), "01\n")
    with tempfile.NamedTemporaryFile("w", suffix=".cnf", delete=False) as f:
        f.write("[ca]\ndefault_ca = d\n[d]\ndatabase = %s\ncrlnumber = %s\ndefault_md = sha256\n"
                "default_crl_days = 3650\ncertificate = %s\nprivate_key = %s\n"
                % (db, num, folder / CA_CERT, folder / CA_KEY))
    return f.name


def _serial(cert_path):
    out = _openssl(["x509", "-in", str(cert_path), "-noout", "-serial"]).decode().strip()
    return int(out.split("=", 1)[1], 16)


def revoke(folder, station_id=None, cert=None):
    """Revoke a station's certificate (`cert`, or the CA folder's <station_id>.crt) and write the
    CA's CRL anew: (the revoked serial as hex, the CRL path). CaError when the certificate is not
    one this CA issued, or there is no CA."""
    folder = Path(folder)
    ca_crt, ca_key = folder / CA_CERT, folder / CA_KEY
    for p in (ca_crt, ca_key):
        if not p.is_file():
            raise CaError("no CA in %s (%s is missing): revoke with the CA that issued the certificate (--dir)"
                          % (folder, p.name))
    if cert is None:
        why = fields.station_id_error(station_id)
        if why:
            raise CaError("station id %r: %s" % (station_id, why))
        cert = folder / (station_id + ".crt")
        if not cert.is_file():
            raise CaError("no certificate %s: give the station's certificate file with --cert" % cert)
    try:
        _openssl(["verify", "-CAfile", str(ca_crt), "-purpose", "sslclient", str(cert)])
    except CaError as e:
        raise CaError("%s was not issued by the CA in %s (%s): revoke it with the CA that issued it"
                      % (cert, folder, e))
    serial = _serial(cert)
    if serial not in _revoked_in_db(folder):
        cnf = _ca_config(folder)
        try:
            _openssl(["ca", "-config", cnf, "-revoke", str(cert)])
        finally:
            os.unlink(cnf)
    return serial_hex(serial), write_crl(folder)


def write_crl(folder):
    """Write the CA's revocation list, <folder>/ca.crl, from its database: its path."""
    folder = Path(folder)
    cnf = _ca_config(folder)
    try:
        pem = _openssl(["ca", "-config", cnf, "-gencrl"])
    finally:
        os.unlink(cnf)
    crl = folder / CA_CRL
    tmp = str(crl) + ".tmp"
    write_private(tmp, pem.decode())
    os.replace(tmp, crl)        # a gateway reading it sees the old list or the new one, whole
    return crl


def _revoked_in_db(folder):
    out = set()
    try:
        lines = (Path(folder) / "index.txt").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        cols = line.split("\t")
        if len(cols) >= 4 and cols[0] == "R":
            out.add(int(cols[3], 16))
    return out


def crl_serials(crl, ca_cert):
    """The serial numbers a CRL revokes, after checking it is signed by `ca_cert`: a set of ints.
    CaError when it does not load or is not that CA's."""
    try:
        _openssl(["crl", "-in", str(crl), "-CAfile", str(ca_cert), "-noout"], want="verify OK")
    except CaError as e:
        raise CaError("the CRL %s is not one signed by the client CA %s (%s): give the CA's ca.crl "
                      "(`picocharge gateway ca revoke` writes it)" % (crl, ca_cert, e))
    text = _openssl(["crl", "-in", str(crl), "-noout", "-text"]).decode("ascii", "replace")
    out = set()
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Serial Number:"):
            out.add(int(line.split(":", 1)[1].strip(), 16))
    return out


class Revocations:
    """The gateway's view of --client-crl: the revoked serials, read again when the file changes
    (looked at most once a second). A CRL that no longer loads keeps the last good list (a
    revocation is never undone by a broken file) and is logged."""

    def __init__(self, crl, ca_cert):
        self.crl, self.ca_cert = str(crl), str(ca_cert)
        self._mtime = os.stat(self.crl).st_mtime_ns
        self.serials = crl_serials(self.crl, self.ca_cert)      # CaError at start: the gateway does not start
        self._looked = time.monotonic()
        self.error = None

    def _refresh(self):
        now = time.monotonic()
        if now - self._looked < 1.0:
            return
        self._looked = now
        try:
            m = os.stat(self.crl).st_mtime_ns
        except OSError as e:
            self.error = "cannot read the CRL %s: %s" % (self.crl, e.strerror or e)
            return
        if m == self._mtime:
            return
        try:
            self.serials = crl_serials(self.crl, self.ca_cert)
            self._mtime, self.error = m, None
            log.info("client CRL %s read again: %d certificates revoked", self.crl, len(self.serials))
        except CaError as e:
            self.error = str(e)
            log.error("%s; the last good list (%d revoked) stays in force", e, len(self.serials))

    def revoked(self, peercert):
        """Whether a verified peer certificate (getpeercert() dict) is revoked."""
        self._refresh()
        sn = (peercert or {}).get("serialNumber")
        try:
            return sn is not None and int(sn, 16) in self.serials
        except ValueError:
            return True     # a serial ssl could not give as hex: refuse rather than guess


def serial_hex(serial):
    """A certificate serial in hex as openssl prints it: whole bytes, so a leading zero nibble is
    kept (0D6F..., not D6F...: the first form is what an operator compares with)."""
    return "%0*X" % (max(1, (serial.bit_length() + 7) // 8) * 2, serial)
