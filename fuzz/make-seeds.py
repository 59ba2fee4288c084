#!/usr/bin/python3
# make-seeds.py DIR: writes a few valid frames (see libmpg/mpg-wire-private.h)
# as seeds for the fuzzer.
import os
import struct
import sys

seeds = {
    'int32': ('i', struct.pack('<i', 42)),
    'string': ('s', b'hello\0'),
    'bytes': ('ay', b'\x01\x02\x03'),
    'tuple': ('(is)', struct.pack('<i', 7) + b'x\0'),
    'maybe': ('mv', b''),
    'array': ('as', b'a\0bc\0' + bytes([0, 2])),
}
for name, (type_string, data) in seeds.items():
    t = type_string.encode()
    frame = b'MPG1' + struct.pack('<III', 0, len(t), len(data)) + t + data
    with open(os.path.join(sys.argv[1], name), 'wb') as f:
        f.write(frame)
