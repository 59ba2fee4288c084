# test_mp_values.py: Python values <-> GVariant, as the multiprocessing
# layer of the override sends them (Mpg.to_variant / Mpg.from_variant)
#
# Copyright 2026 The libmpg authors
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import collections
import enum
import math

import gi
gi.require_version('Mpg', '1.0')
from gi.repository import GLib, Mpg  # noqa: E402

import pytest  # noqa: E402

pytestmark = pytest.mark.usefixtures('no_glib_criticals')

ROUND_TRIPS = [
    None, True, False, 0, 1, -1, 2 ** 63 - 1, -2 ** 63, 0.0, -2.5, 1e300, math.inf,
    '', 'hello', 'ünïcödé ✓', 'a\0b', '\udc80lone surrogate', b'', b'\0\xff', [], (), {},
    [1, 2, 3], [1.5, 2.5], [True, False], ['a', 'b'], ['a\0', 'b'], [1, 'a', None, 2.5],
    (1,), (1, 'a', (None, [b'x'])), {'a': 1, 'b': [None, {'c': ()}]},
    [[1, 2], [3]], [(1, 2), (3, 4)], [{'k': 'v'}], {'': None},
]


@pytest.mark.parametrize('value', ROUND_TRIPS, ids=repr)
def test_round_trip_keeps_value_and_type(value):
    def same(a, b):
        assert type(a) is type(b), (a, b)
        if isinstance(a, (list, tuple)):
            assert len(a) == len(b)
            for x, y in zip(a, b):
                same(x, y)
        elif isinstance(a, dict):
            assert a.keys() == b.keys()
            for k in a:
                same(a[k], b[k])
        else:
            assert a == b
    v = Mpg.to_variant(value)
    assert isinstance(v, GLib.Variant)
    # What goes through a channel is the serialised form.
    v = GLib.Variant.new_from_bytes(v.get_type(), v.get_data_as_bytes(), False)
    same(Mpg.from_variant(v), value)


def test_nan_round_trips():
    assert math.isnan(Mpg.from_variant(Mpg.to_variant(math.nan)))


@pytest.mark.parametrize('value, type_string', [
    (None, 'mv'), (True, 'b'), (3, 'x'), (1.0, 'd'), ('s', 's'), (b'b', 'ay'),
    ([1, 'a'], 'av'), ((1, 'a'), '(vv)'), ((), '()'), ({'a': 1}, 'a{sv}'),
    ([1, 2], 'ax'), ([1.0], 'ad'), ([True], 'ab'), (['a'], 'as'), ([], 'av'),
])
def test_encoding_is_documented_and_stable(value, type_string):
    assert Mpg.to_variant(value).get_type_string() == type_string


@pytest.mark.parametrize('value, fragment', [
    (object(), 'object'),
    ({1: 'a'}, 'dict keys must be str'),
    ({1, 2}, 'set'),
    (2 ** 63, '64 bits'),
    (-2 ** 63 - 1, '64 bits'),
    (lambda: 0, 'function'),
    ([1, [2, {'x': 1j}]], "value[1][1]['x']"),
])
def test_unsendable_values_raise_type_error_naming_them(value, fragment):
    with pytest.raises(TypeError) as excinfo:
        Mpg.to_variant(value)
    assert fragment in str(excinfo.value)


def test_self_referencing_list_is_a_type_error():
    a = []
    a.append(a)
    with pytest.raises(TypeError, match='nest'):
        Mpg.to_variant(a)


def test_subclasses_arrive_as_their_base_type():
    class Colour(enum.IntEnum):
        RED = 1

    Point = collections.namedtuple('Point', 'x y')
    assert Mpg.from_variant(Mpg.to_variant([Colour.RED, Point(1, 2)])) == [1, (1, 2)]
    assert type(Mpg.from_variant(Mpg.to_variant(Point(1, 2)))) is tuple
    assert Mpg.from_variant(Mpg.to_variant(bytearray(b'xy'))) == b'xy'


def test_glib_variants_pass_as_they_are():
    v = GLib.Variant('(iu)', (1, 2))
    assert Mpg.to_variant(v) is v
    assert Mpg.to_variant([v]).get_type_string() == 'av'


@pytest.mark.parametrize('text, expected', [
    ("int32 5", 5), ("@ai [1, 2]", [1, 2]), ("@au [7]", [7]), ("@at [1]", [1]),
    ("@an [-1]", [-1]), ("@aq [1]", [1]), ("byte 3", 3), ("@(is) (1, 'a')", (1, 'a')),
    ("@a{ss} {'a': 'b'}", {'a': 'b'}), ("@a{is} {1: 'b'}", {1: 'b'}),
    ("@ms nothing", None), ("@ms 'x'", 'x'), ("<<42>>", 42), ("@o '/a'", '/a'),
    ("@aay [[0x61]]", [b'a']), ("@a(ii) [(1, 2)]", [(1, 2)]),
])
def test_any_variant_can_be_received(text, expected):
    assert Mpg.from_variant(GLib.Variant.parse(None, text)) == expected
