"""A tiny PNG decoder (8-bit greyscale/RGB/RGBA, non-interlaced) for screenshot checks."""

from __future__ import annotations

import struct
import zlib

import numpy as np

_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def read_png(path) -> np.ndarray:
    """Decode a PNG file to a ``(height, width, channels)`` uint8 array."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError(f"{path}: no IHDR chunk")
    width, height, depth, ctype, _, _, interlace = header
    if depth != 8 or ctype not in _CHANNELS or interlace:
        raise ValueError(f"{path}: unsupported PNG (depth {depth}, colour type {ctype}, "
                         f"interlace {interlace})")
    ch = _CHANNELS[ctype]
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8)
    stride = width * ch
    rows = raw.reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = [0] * stride
    for y in range(height):
        ftype, line = int(rows[y, 0]), rows[y, 1:]
        if ftype == 0:
            cur = line.tolist()
        elif ftype == 1:  # Sub: a running sum per channel
            cur = (np.cumsum(line.reshape(width, ch).astype(np.int64), axis=0) & 0xFF)
            cur = cur.reshape(-1).tolist()
        elif ftype == 2:
            cur = ((line.astype(np.int64) + np.asarray(prev)) & 0xFF).tolist()
        elif ftype in (3, 4):  # Average / Paeth depend on the decoded left pixel: sequential
            vals, cur = line.tolist(), [0] * stride
            for x in range(stride):
                a = cur[x - ch] if x >= ch else 0
                b = prev[x]
                if ftype == 3:
                    pred = (a + b) >> 1
                else:
                    c = prev[x - ch] if x >= ch else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
                cur[x] = (vals[x] + pred) & 0xFF
        else:
            raise ValueError(f"{path}: bad PNG filter type {ftype} on row {y}")
        out[y] = cur
        prev = cur
    return out.reshape(height, width, ch)
