"""Certificates made for one test with `cryptography`: a CA and a server certificate it signed
for 127.0.0.1, a server certificate it signed for another host name, and a second,
unrelated self-signed CA (the wrong one); `client` issues station (client) certificates
from either CA. EC P-256 keys: quick to make."""
import datetime
import ipaddress
import ssl
from pathlib import Path
from types import SimpleNamespace

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_PEM = serialization.Encoding.PEM
_DER = serialization.Encoding.DER


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, key, issuer, issuer_key, ca, sans=()):
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=36500))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def make(d):
    """Write the files into folder d; returns their paths:
    ca_der, ca_pem (the right CA), wrong_der, wrong_pem (another CA), cert/key (127.0.0.1,
    signed by the right CA), other_cert/other_key (other.example, signed by the right CA)."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    ca_key, wrong_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("PicoCharge test CA", ca_key, "PicoCharge test CA", ca_key, True)
    wrong = _cert("Somebody else's CA", wrong_key, "Somebody else's CA", wrong_key, True)
    out = SimpleNamespace()
    for name, c in (("ca", ca), ("wrong", wrong)):
        setattr(out, name + "_der", d / (name + ".der"))
        setattr(out, name + "_pem", d / (name + ".pem"))
        (d / (name + ".der")).write_bytes(c.public_bytes(_DER))
        (d / (name + ".pem")).write_bytes(c.public_bytes(_PEM))
    for name, sans in (("server", [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       ("other", [x509.DNSName("other.example")])):
        k = ec.generate_private_key(ec.SECP256R1())
        c = _cert(name, k, "PicoCharge test CA", ca_key, False, sans)
        (d / (name + ".crt")).write_bytes(c.public_bytes(_PEM))
        (d / (name + ".key")).write_bytes(k.private_bytes(_PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    out.ca_key, out.wrong_key = ca_key, wrong_key     # for client()
    out.dir = d
    out.cert, out.key = d / "server.crt", d / "server.key"
    out.other_cert, out.other_key = d / "other.crt", d / "other.key"
    return out


def server_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def client(certs, cn, wrong_ca=False, name=None):
    """A client (station) certificate with subject CN=cn, signed by certs' CA (or by the wrong
    one), and its key: (crt path, key path), PEM, in certs.dir as <name or cn>.crt/.key."""
    k = ec.generate_private_key(ec.SECP256R1())
    issuer, issuer_key = (("Somebody else's CA", certs.wrong_key) if wrong_ca
                          else ("PicoCharge test CA", certs.ca_key))
    c = _cert(cn, k, issuer, issuer_key, False)
    crt, key = certs.dir / ((name or cn) + ".crt"), certs.dir / ((name or cn) + ".key")
    crt.write_bytes(c.public_bytes(_PEM))
    key.write_bytes(k.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return crt, key
