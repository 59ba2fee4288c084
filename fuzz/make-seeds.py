#!/usr/bin/python3
# make-seeds.py [DIR]: writes the seed corpora of the fuzz targets, small
# valid inputs of each, into DIR/TARGET/ (default: fuzz/corpus, where they
# are kept in git: run this again only to change them). Frames are those of
# libmpg/mpg-wire-private.h; the values are serialised by GLib (PyGObject).
# The other files there, named by their SHA-1, are inputs that long fuzz
# runs found (fuzz/README.md), not written by this script.
#
# Copyright 2026 The libmpg authors
# SPDX-License-Identifier: LGPL-2.1-or-later
import os
import struct
import sys

from gi.repository import GLib


def frame(type_string, value):
    data = GLib.Variant(type_string, value).get_data_as_bytes().get_data()
    t = type_string.encode()
    return b'MPG1' + struct.pack('<III', 0, len(t), len(data)) + t + data


def memfd_ref(size, flags=0, offset=0):
    return b'MPGM' + struct.pack('<IQQ', flags, size, offset)


error = ('(sis)', ('g-io-error-quark', 1, 'No such file'))
values = {
    'int32': ('i', 42),
    'string': ('s', 'hello'),
    'bytes': ('ay', b'\x01\x02\x03'),
    'tuple': ('(is)', (7, 'x')),
    'maybe': ('mv', None),
    'array': ('as', ['a', 'bc']),
    'booleans': ('ab', [True, False]),
    'doubles': ('ad', [1.5, -0.0]),
    'dict': ('a{sv}', {'a': GLib.Variant('u', 1), 'b': GLib.Variant('as', ['x'])}),
    'nested': ('v', GLib.Variant('v', GLib.Variant('(ybnqiuxtdsog)',
                                                   (1, True, -2, 3, -4, 5, -6, 7, 0.5, 's', '/o', 'g')))),
    'handle': ('h', 0),
    'handles': ('(hav)', (1, [GLib.Variant('h', 0), GLib.Variant('mh', 2)])),
    'error': error,
    'result-value': ('(bmv(sis))', (True, GLib.Variant('i', 3), ('', 0, ''))),
    'result-error': ('(bmv(sis))', (False, None, ('my-app-error', -5, 'Failed'))),
    'reply': ('(utva(u(sis)))', (1, 2, GLib.Variant('ai', [1, 2, 3]), [])),
}
frames = {name: frame(*v) for name, v in values.items()}
frames['connection'] = frame('(hbb)', (1, True, True))
frames['queue'] = frame('(hhh)', (1, 2, 3))

top = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus')
seeds = {
    'wire': dict(frames, **{
        'two-frames': frames['int32'] + frames['string'],
        'incomplete': frames['tuple'][:-3],
    }),
    # n_fds, then one datagram.
    'variant': {
        'int32': b'\0' + frames['int32'],
        'handle': b'\1' + frames['handle'],
        'handles': b'\3' + frames['handles'],
        'handle-out-of-range': b'\2' + frame('(hh)', (0, 2)),
        'dict': b'\0' + frames['dict'],
        'nested': b'\0' + frames['nested'],
        'error': b'\0' + frames['error'],
        'error-odd-domain': b'\0' + frame('(sis)', ('no such domain!', 2, 'oops')),
        'error-empty-domain': b'\0' + frame('(sis)', ('', 0, '')),
        'errors': b'\0' + frame('a(u(sis))', [(0, ('mpg-error-quark', 3, 'x')), (1, ('a-b.c_d', 7, 'y'))]),
        'result-value': b'\0' + frames['result-value'],
        'result-error': b'\0' + frames['result-error'],
        'bytes': b'\0' + frames['bytes'],
    },
    # Three bytes of choices, then the datagram's length, the datagram and
    # the memfd's content (fuzz-channel.c).
    'channel': {
        'inline': b'\0\0\0' + struct.pack('<H', len(frames['tuple'])) + frames['tuple'],
        'inline-fds': b'\3\x06\x39' + struct.pack('<H', len(frames['handles'])) + frames['handles'],
        'memfd': b'\1\x08\0' + frames['dict'],
        'memfd-fds': b'\4\x08\x24' + frames['handles'],
        'memfd-ref': b'\1\0\0' + struct.pack('<H', 24) + memfd_ref(len(frames['int32'])) + frames['int32'],
        'memfd-ref-offset': b'\1\0\0' + struct.pack('<H', 24) + memfd_ref(len(frames['string']), 0, 8)
                            + b'MPGB\0\0\0\0' + frames['string'],
        'memfd-reuse': b'\1\x0f\0' + frames['dict'],
        'memfd-reuse-ref': b'\1\x07\0' + struct.pack('<H', 24) + memfd_ref(len(frames['doubles']), 1, 13)
                           + b'\0' * 13 + frames['doubles'] + b'stale bytes of an earlier message',
        'memfd-reuse-unsealed': b'\1\1\0' + struct.pack('<H', 24) + memfd_ref(len(frames['tuple']), 1, 0)
                                + frames['tuple'],
        'memfd-reuse-short': b'\1\7\0' + struct.pack('<H', 24) + memfd_ref(len(frames['tuple']) + 1, 1, 0)
                             + frames['tuple'],
        'memfd-unsealed': b'\1\x09\0' + frames['string'],
        'memfd-cap': b'\1\x88\0' + frames['bytes'],
        'memfd-pipe': b'\1\x0c\0' + frames['int32'],
        'connection': b'\2\6\2' + struct.pack('<H', len(frames['connection'])) + frames['connection'],
        'queue': b'\4\6\x3a' + struct.pack('<H', len(frames['queue'])) + frames['queue']
                 + struct.pack('<IIII', 0x5147504d, 1, 0, 0),
        'queue-memfd': b'\4\x08\x3a' + frame('(hhh)', (0, 1, 2)),
    },
    # Modes, chunk, serial, length, then the datagram (fuzz-pool.c).
    'pool': {
        'reply': b'\0' + struct.pack('<IQH', 1, 2, 3) + frames['reply'],
        'reply-own': b'\7' + struct.pack('<IQH', 0, 0, 0) + frames['reply'],
        'reply-boxed': b'\0' + struct.pack('<IQH', 4, 5, 2) + frame('(utva(u(sis)))', (
            4, 5, GLib.Variant('av', [GLib.Variant('s', 'ok'), GLib.Variant('()', ())]),
            [(1, ('g-io-error-quark', 1, 'No such file'))])),
        'reply-twice': b'\0' + struct.pack('<IQH', 4, 5, 2) + frame('(utva(u(sis)))', (
            4, 5, GLib.Variant('av', [GLib.Variant('()', ()), GLib.Variant('()', ())]),
            [(1, ('a', 1, 'x')), (1, ('b', 2, 'y'))])),
        'reply-unboxed-failure': b'\7' + struct.pack('<IQH', 0, 0, 0) + frame('(utva(u(sis)))', (
            0, 0, GLib.Variant('ai', [1]), [(0, ('a', 1, 'x'))])),
        'reply-too-many-failures': b'\7' + struct.pack('<IQH', 0, 0, 0) + frame('(utva(u(sis)))', (
            0, 0, GLib.Variant('av', [GLib.Variant('()', ())]), [(0, ('a', 1, 'x')), (1, ('b', 2, 'y'))])),
        'init-error': b'\0' + struct.pack('<IQH', 0, 0, 0) + frames['error'],
        'not-a-reply': b'\0' + struct.pack('<IQH', 0, 0, 0) + frames['tuple'],
        'reply-numbers': b'\0' + struct.pack('<IQH', 0, 0, 3) + frame('ax', [1, 4, 9]),
        'reply-numbers-short': b'\0' + struct.pack('<IQH', 0, 0, 4) + frame('ad', [1.0, 2.0]),
        'reply-bytes': b'\4' + struct.pack('<IQH', 0, 0, 0) + frame('ay', b'xyz'),
    },
}

for target, files in seeds.items():
    d = os.path.join(top, target)
    os.makedirs(d, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(d, name), 'wb') as f:
            f.write(data)
