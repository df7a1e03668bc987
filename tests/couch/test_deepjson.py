"""JSON of any depth (corehq/couch/deepjson.py): orjson's answers where it
gives one, the same JSON past its limits."""
import json
import random

import orjson
import pytest

from corehq.couch import deepjson
from corehq.couch.deepjson import _decode, _encode


def deep_text(depth, leaf='{"a":1}'):
    """Lists and objects nested ``depth`` levels around ``leaf``, as compact JSON."""
    opened = ''.join('[' if level % 2 else '{"k":' for level in range(depth))
    closed = ''.join(']' if level % 2 else '}' for level in reversed(range(depth)))
    return opened + leaf + closed


@pytest.mark.parametrize('depth', [254, 256, 300, 1023, 1025, 3000, 100_000])
def test_any_depth_goes_both_ways_unchanged(depth):
    text = deep_text(depth).encode()
    value = deepjson.loads(text)
    assert deepjson.dumps(value) == text
    for _level in range(depth):  # every level is there, down to the leaf
        value = value['k'] if isinstance(value, dict) else value[0]
    assert value == {'a': 1}


def test_what_orjson_takes_is_orjsons_answer():
    value = {'_id': 'é中😀', 'n': [1, 2.5, -0.0, None, True, False], 'nested': {'x': 'a"b\\c\n'}}
    assert deepjson.dumps(value) == orjson.dumps(value)
    assert deepjson.loads(orjson.dumps(value)) == value


def random_value(rng, depth=0):
    pick = rng.random()
    if depth > 5 or pick < 0.35:
        return rng.choice([None, True, False, 0, -1, 2 ** 70, -(2 ** 65), 1.5, 1e-300, 3.14e200, '',
                           'a"b\\c\n\u0001\u2028é中😀', '\ud800 lone surrogate'])
    if pick < 0.7:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(['', 'k', 'é', '"q', 'a b']) + str(i): random_value(rng, depth + 1)
            for i in range(rng.randint(0, 4))}


def test_the_codec_agrees_with_the_standard_library():
    rng = random.Random(18)
    for _ in range(2000):
        value = random_value(rng)
        assert json.loads(_encode(value)) == value
        for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=rng.choice([None, 1]))):
            assert _decode(text) == json.loads(text)


def test_what_orjson_refuses_to_write_is_written_exactly():
    # integers past 64 bits, and a lone surrogate that is no UTF-8, go as the standard library writes them
    for value in ([2 ** 64, -(2 ** 70)], {'s': '\ud800'}):
        with pytest.raises(orjson.JSONEncodeError):
            orjson.dumps(value)
        assert json.loads(deepjson.dumps(value)) == value
    assert deepjson.dumps([float('nan'), float('inf')]) == orjson.dumps([float('nan'), float('inf')])


@pytest.mark.parametrize('text', [
    '', ' ', '[', '[1,]', '{"a":1,}', '{"a" 1}', '[1 2]', 'nul', 'NaN', 'Infinity', '1e999', '"\\x"',
    '{1:2}', '[]]', '"\x01"', '01', '[' * 2000 + ']' * 1999, b'"\xff"',
])
def test_what_is_not_json_is_a_json_decode_error(text):
    with pytest.raises(deepjson.JSONDecodeError):
        deepjson.loads(text)


def test_what_json_cannot_hold_is_a_type_error():
    deep = [{1: 'a key that is no string'}]
    for _ in range(300):
        deep = [deep]
    with pytest.raises(TypeError):
        deepjson.dumps(deep)
    with pytest.raises(TypeError):
        deepjson.dumps([object()] + [[[]]] * 300)
