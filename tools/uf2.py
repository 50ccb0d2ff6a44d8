"""UF2 images (https://github.com/microsoft/uf2): check one is meant for an RP2040's flash.

Each 512-byte block: magicStart0, magicStart1, flags, targetAddr, payloadSize, blockNo,
numBlocks, fileSize-or-familyID (eight little-endian u32), 476 bytes of data, magicEnd.
"""
import struct

MAGIC_START0 = 0x0A324655
MAGIC_START1 = 0x9E5D5157
MAGIC_END = 0x0AB16F30
FLAG_NOT_MAIN_FLASH = 0x00000001
FLAG_FILE_CONTAINER = 0x00001000
FLAG_FAMILY_ID = 0x00002000
RP2040_FAMILY = 0xE48BFF56
FLASH_START = 0x10000000
FLASH_SIZE = 16 * 1024 * 1024   # the RP2040 maps up to 16 MB of QSPI flash (a Pico W has 2 MB)
PAYLOAD = 256                   # the RP2040 boot ROM writes 256-byte pages
BLOCK = 512


class UF2Error(ValueError):
    """`block` is the index of the first bad block (None for whole-file problems)."""

    def __init__(self, message, block=None):
        super().__init__(message)
        self.block = block


def check(data, family=RP2040_FAMILY):
    """Validate a UF2 image for the RP2040; returns a summary dict or raises UF2Error."""
    if not data:
        raise UF2Error("the file is empty")
    if len(data) % BLOCK:
        raise UF2Error("the file is %d bytes, not a whole number of 512-byte UF2 blocks "
                       "(truncated download?)" % len(data))
    n = len(data) // BLOCK
    total = None
    lo, hi = None, None
    for i in range(n):
        off = i * BLOCK
        (m0, m1, flags, addr, size, blockno, numblocks, fam) = struct.unpack_from("<8I", data, off)
        (mend,) = struct.unpack_from("<I", data, off + BLOCK - 4)
        where = "block %d (byte offset %d)" % (i, off)

        def bad(msg):
            return UF2Error("%s: %s" % (where, msg), i)

        if m0 != MAGIC_START0:
            raise bad("first magic number is 0x%08X, expected 0x%08X: not a UF2 file" % (m0, MAGIC_START0))
        if m1 != MAGIC_START1:
            raise bad("second magic number is 0x%08X, expected 0x%08X" % (m1, MAGIC_START1))
        if mend != MAGIC_END:
            raise bad("final magic number is 0x%08X, expected 0x%08X" % (mend, MAGIC_END))
        if flags & FLAG_NOT_MAIN_FLASH:
            raise bad("is flagged 'not main flash'; an RP2040 image has none")
        if flags & FLAG_FILE_CONTAINER:
            raise bad("is a file-container block, not a flash image")
        if not flags & FLAG_FAMILY_ID:
            raise bad("has no family id (flag 0x2000 unset); an RP2040 image names family 0x%08X" % family)
        if fam != family:
            raise bad("family id is 0x%08X, expected 0x%08X (RP2040): this image is for another chip"
                      % (fam, family))
        if size != PAYLOAD:
            raise bad("payload size is %d, expected %d for the RP2040" % (size, PAYLOAD))
        if addr % PAYLOAD:
            raise bad("target address 0x%08X is not 256-byte aligned" % addr)
        if not (FLASH_START <= addr and addr + size <= FLASH_START + FLASH_SIZE):
            raise bad("target address 0x%08X is outside the RP2040's flash (0x%08X..0x%08X)"
                      % (addr, FLASH_START, FLASH_START + FLASH_SIZE))
        if total is None:
            total = numblocks
            if total != n:
                raise bad("says the image has %d blocks, but the file holds %d" % (total, n))
        elif numblocks != total:
            raise bad("says the image has %d blocks, block 0 says %d" % (numblocks, total))
        if blockno != i:
            raise bad("is numbered %d, expected %d (blocks out of order or missing)" % (blockno, i))
        lo = addr if lo is None else min(lo, addr)
        hi = addr + size if hi is None else max(hi, addr + size)
    return {"blocks": n, "bytes": n * PAYLOAD, "start": lo, "end": hi, "family": family}


def build(payload, base=FLASH_START, family=RP2040_FAMILY):
    """A UF2 image writing `payload` at `base` (for tests and tools)."""
    chunks = [payload[i:i + PAYLOAD] for i in range(0, len(payload), PAYLOAD)] or [b""]
    out = bytearray()
    for i, c in enumerate(chunks):
        c = c.ljust(PAYLOAD, b"\0")
        head = struct.pack("<8I", MAGIC_START0, MAGIC_START1, FLAG_FAMILY_ID, base + i * PAYLOAD,
                           PAYLOAD, i, len(chunks), family)
        out += head + c.ljust(476, b"\0") + struct.pack("<I", MAGIC_END)
    return bytes(out)
