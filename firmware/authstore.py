# The Local Authorization List and the authorization cache on flash: fixed-size records sorted
# by idTag, looked up by a binary search with file seeks (a 1,000-tag list takes ten reads of
# 48 bytes, never the list in RAM), rewritten by a merge into a temporary file that is then
# renamed over the old one (a power cut leaves the old list or the new one, whole).
# Pure logic and files: runs under MicroPython and CPython (tests/support/auth_checks.py).
# Imported per use (authz.py, cs_auth.py) and dropped after it.
#
# A file: an 8-byte header (b"PCA1", listVersion as u32) and records of 48 bytes:
#   idTag (20 bytes, UTF-8, NUL-padded), parentIdTag (20), expiryDate (u32 epoch seconds,
#   0: none), status (1 byte: an index of STATUS), 3 bytes padding.
import os
import struct

import log
import ocppj

LIST = "auth_list.bin"
CACHE = "auth_cache.bin"
STATUS = ("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx")
REC = 48
_HDR = 8
_FMT = "<20s20sIB3x"
_MAGIC = b"PCA1"
# 1,000 tags: 48 KB, 12 LittleFS blocks, and the same again for the temporary file while a
# SendLocalList is merged in: 96 KiB of the ~156 KiB a Pico W has free at the peak of an
# update (docs/firmware.md, "Flash layout on a Pico W").
LIST_MAX = 1000
CACHE_MAX = 64          # a full cache starts over (the specification lets a station drop any entry)


def key(tag):
    """The 20-byte sort key of idTag `tag` (ValueError if it is longer than OCPP's 20)."""
    b = tag.encode()
    if len(b) > 20 or b"\0" in b:
        raise ValueError("idTag %r is not 1..20 characters" % tag[:24])
    return b + bytes(20 - len(b))


def pack(tag, status, expiry=0, parent=None):
    """One record: idTag, status (a name in STATUS), expiry (epoch s, 0: none), parentIdTag."""
    return struct.pack(_FMT, key(tag), key(parent or ""), expiry, STATUS.index(status))


def _text(raw):
    i = raw.find(b"\0")
    return (raw if i < 0 else raw[:i]).decode()


def unpack(rec):
    """(idTag, status, expiry, parentIdTag or None) of a record."""
    tag, parent, expiry, st = struct.unpack(_FMT, rec)
    return _text(tag), STATUS[st] if st < len(STATUS) else "Invalid", expiry, _text(parent) or None


def version(path=LIST):
    """The listVersion of the list at `path` (0: there is none)."""
    try:
        with open(path, "rb") as f:
            h = f.read(_HDR)
    except OSError:
        return 0
    if len(h) != _HDR or h[:4] != _MAGIC:
        return 0
    return struct.unpack("<I", h[4:])[0]


def count(path=LIST):
    try:
        return (os.stat(path)[6] - _HDR) // REC
    except OSError:
        return 0


def lookup(tag, path=LIST, now_s=None):
    """(status, parentIdTag or None) of `tag` in the file, or None when it is not there. An
    Accepted entry whose expiryDate is before now_s (epoch s) reads as Expired."""
    try:
        k = key(tag)
        f = open(path, "rb")
    except (OSError, ValueError):
        return None
    with f:
        f.seek(0, 2)
        n = (f.tell() - _HDR) // REC
        buf = bytearray(REC)
        lo = 0
        hi = n
        while lo < hi:
            mid = (lo + hi) // 2
            f.seek(_HDR + mid * REC)
            if f.readinto(buf) != REC:
                return None
            kk = bytes(buf[:20])
            if kk == k:
                _t, st, exp, parent = unpack(buf)
                if st == "Accepted" and exp and now_s is not None and now_s > exp:
                    st = "Expired"
                return st, parent
            if kk < k:
                lo = mid + 1
            else:
                hi = mid
    return None


def write(path, changes, ver, full, most):
    """Merge `changes`, [(idTag, record or None: remove it)] with distinct tags, into the file
    (full: into nothing) with listVersion `ver`; the number of entries it then holds. Raises
    ValueError, the file unchanged, when that would be more than `most`."""
    changes = sorted([(key(t), r) for t, r in changes], key=lambda c: c[0])
    for i in range(1, len(changes)):
        if changes[i][0] == changes[i - 1][0]:
            raise ValueError("idTag %s is in the list twice" % _text(changes[i][0]))
    tmp = path + ".tmp"
    src = None
    if not full:
        try:
            src = open(path, "rb")
            src.seek(_HDR)
        except OSError:
            src = None
    n = 0
    buf = bytearray(REC)
    try:
        with open(tmp, "wb") as out:
            out.write(_MAGIC + struct.pack("<I", ver))
            have = src is not None and src.readinto(buf) == REC
            for k, rec in changes:
                while have and bytes(buf[:20]) < k:
                    out.write(buf)
                    n += 1
                    have = src.readinto(buf) == REC
                if have and bytes(buf[:20]) == k:    # replaced or removed
                    have = src.readinto(buf) == REC
                if rec is not None:
                    out.write(rec)
                    n += 1
            while have:
                out.write(buf)
                n += 1
                have = src.readinto(buf) == REC
    finally:
        if src is not None:
            src.close()
    if n > most:
        os.remove(tmp)
        raise ValueError("%d entries, more than the %d allowed" % (n, most))
    os.rename(tmp, path)
    return n


def cache_put(tag, status, expiry=0, parent=None):
    """Remember an Authorize / StartTransaction answer for `tag` in the cache."""
    rec = pack(tag, status, expiry, parent)
    try:
        write(CACHE, [(tag, rec)], 0, False, CACHE_MAX)
    except ValueError:       # full: it starts over with this one
        write(CACHE, [(tag, rec)], 0, True, CACHE_MAX)


def remember(tag, info, keys):
    """(status, parentIdTag or None) of the idTagInfo of an Authorize or StartTransaction answer
    for `tag`, put in the cache with AuthorizationCacheEnabled (in `keys`, the configuration
    keys); ("Invalid", None) for one that is not an idTagInfo."""
    if not isinstance(info, dict):
        return "Invalid", None
    st = info.get("status")
    parent = info.get("parentIdTag")
    if st not in STATUS:
        log.get("ocpp").warn("idTagInfo status %r is not an OCPP 1.6 one: taken as Invalid", str(st)[:20])
        return "Invalid", None
    if not isinstance(parent, str) or not 0 < len(parent) <= 20:
        parent = None
    if keys["AuthorizationCacheEnabled"]:
        exp = 0
        if isinstance(info.get("expiryDate"), str):
            try:
                exp = ocppj.parse_iso_ms(info["expiryDate"]) // 1000
            except ValueError:
                exp = 0
        try:
            cache_put(tag, st, exp, parent)
        except (OSError, ValueError) as e:
            log.get("ocpp").warn("authorization cache: %r", e)
    return st, parent


def clear(path):
    try:
        os.remove(path)
    except OSError:
        pass
