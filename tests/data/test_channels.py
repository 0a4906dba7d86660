import json

import numpy as np
import pytest

from bioseg.config.channels import ChannelEntry, is_channel_spec_simple, parse_channel_spec
from bioseg.data.channels import ChannelMapper
from bioseg.data.preprocess import select_channels
from bioseg.errors import BiosegError

SHAPES = [(7, 5, 6), (7, 3, 4, 5)]  # (C, *spatial): 2D and 3D, 7 channels


def _image(shape, dtype=np.uint16):
    """Channel c is filled with 10 * (c + 1), plus a small ramp so channels differ per pixel too."""
    c = shape[0]
    ramp = np.arange(np.prod(shape[1:])).reshape(shape[1:]) % 5
    img = np.stack([10 * (k + 1) + ramp for k in range(c)])
    return img.astype(dtype)


def _channel_of(out_channel, img):
    """The source index whose values equal ``out_channel`` exactly, or None (zeros → -1)."""
    if not out_channel.any():
        return -1
    hits = [c for c in range(img.shape[0]) if np.array_equal(out_channel, img[c].astype(np.float32))]
    return hits[0] if len(hits) == 1 else None


# --- parsing ---------------------------------------------------------------------------------------------


def test_parse_every_form():
    entries = parse_channel_spec(
        [
            2,
            "DAPI",
            {"random": [3, 4, 5]},
            {"merge": [0, 3, 6]},
            {"merge": [0, 3], "mode": "max", "dropout": 0.3},
            {"index": 2, "dropout": 0.2},
            "blank",
            {"blank": True},
            np.int64(1),
        ]
    )
    assert entries == [
        ChannelEntry("index", (2,)),
        ChannelEntry("index", ("DAPI",)),
        ChannelEntry("random", (3, 4, 5)),
        ChannelEntry("merge", (0, 3, 6), "mean", 0.0),
        ChannelEntry("merge", (0, 3), "max", 0.3),
        ChannelEntry("index", (2,), dropout=0.2),
        ChannelEntry("blank"),
        ChannelEntry("blank"),
        ChannelEntry("index", (1,)),
    ]
    assert [e.stochastic for e in entries] == [False, False, True, False, True, True, False, False, False]


@pytest.mark.parametrize(
    "spec, match",
    [
        ([{"radnom": [3, 4]}], r"unknown key 'radnom'\. Did you mean 'random'\?.*Valid forms"),
        ([{"merge": [0, 1], "mdoe": "max"}], r"unknown key 'mdoe'\. Did you mean 'mode'\?"),
        ([{"merge": [0, 1], "dropuot": 0.1}], r"Did you mean 'dropout'\?"),
        ([{"random": [0, 1], "dropout": 0.1}], r"'dropout' does not go with 'random'"),
        ([{"index": 1, "mode": "max"}], r"'mode' does not go with 'index'"),
        ([{"random": [0, 1], "merge": [2, 3]}], r"both random and merge"),
        ([{"dropout": 0.3}], r"none of index, random, merge, blank"),
        ([1.5], r"entry 0 is 1\.5 \(float\); valid forms: an index"),
        ([0, None], r"entry 1 is None"),
        ([True], r"valid forms"),
        ([[0, 1]], r"valid forms"),
        ([{"index": 2.0}], r"expected a channel index"),
        ([{"random": []}], r"'random' is \[\]; expected a non-empty list"),
        ([{"merge": []}], r"non-empty list"),
        ([{"merge": 3}], r"non-empty list"),
        ([{"random": [1, 1, 2]}], r"lists channel 1 more than once"),
        ([{"merge": [0, "blank"]}], r"'blank', which is not a channel"),
        ([{"index": 1, "dropout": -0.1}], r"dropout is -0\.1; expected a probability p with 0 <= p < 1"),
        ([{"index": 1, "dropout": 1.0}], r"0 <= p < 1"),
        ([{"merge": [0, 1], "dropout": 1.5}], r"0 <= p < 1"),
        ([{"merge": [0, 1], "dropout": "0.3"}], r"0 <= p < 1"),
        ([{"index": 1, "dropout": True}], r"0 <= p < 1"),
        ([{"merge": [0, 1], "mode": "maxx"}], r"'maxx'; expected one of mean, max\. Did you mean 'max'"),
        ([{"merge": [0, 1], "mode": "sum"}], r"merge mode is 'sum'"),
        ([{"blank": False}], r"write \{blank: true\}"),
        ([""], r"expected a channel index"),
        ([], r"non-empty list"),
        ("DAPI", r"non-empty list"),
        ({"merge": [0, 1]}, r"non-empty list"),
        (None, r"non-empty list"),
    ],
)
def test_parse_rejects_bad_specs(spec, match):
    with pytest.raises(BiosegError, match=match):
        parse_channel_spec(spec)


def test_unknown_key_error_names_the_entry_position():
    with pytest.raises(BiosegError, match=r"data\.channels entry 2: unknown key 'indx'.*'index'"):
        parse_channel_spec([0, 1, {"indx": 2}])


def test_is_channel_spec_simple():
    assert is_channel_spec_simple([0, 2, 1])
    assert is_channel_spec_simple((np.int32(3),))
    assert is_channel_spec_simple(None)  # every channel: the plain path too
    assert not is_channel_spec_simple([])
    assert not is_channel_spec_simple([0, "DAPI"])
    assert not is_channel_spec_simple([0, {"random": [1, 2]}])
    assert not is_channel_spec_simple([True, 1])
    assert not is_channel_spec_simple("0")


# --- evaluation: deterministic, values exact -----------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_eval_values_of_every_form(shape):
    img = _image(shape)
    f = img.astype(np.float32)
    spec = [
        2,
        {"random": [3, 4, 5]},
        {"merge": [0, 3, 6]},
        {"merge": [0, 3, 6], "mode": "max", "dropout": 0.5},
        {"merge": [1, 5], "dropout": 0.9},
        {"index": 2, "dropout": 0.9},
        "blank",
        {"blank": True},
        -1,
    ]
    mapper = ChannelMapper(spec)
    out = mapper(img, train=False)
    assert out.dtype == np.float32 and out.shape == (len(spec), *shape[1:])
    np.testing.assert_array_equal(out[0], f[2])
    np.testing.assert_allclose(out[1], (f[3] + f[4] + f[5]) / 3, rtol=1e-6)
    np.testing.assert_allclose(out[2], f[[0, 3, 6]].mean(0), rtol=1e-6)
    np.testing.assert_array_equal(out[3], f[[0, 3, 6]].max(0))  # dropout off at eval: every member
    np.testing.assert_allclose(out[4], (f[1] + f[5]) / 2, rtol=1e-6)
    np.testing.assert_array_equal(out[5], f[2])  # dropout off at eval: the channel as it is
    assert not out[6].any() and not out[7].any()
    np.testing.assert_array_equal(out[8], f[6])
    # deterministic, needs no rng, and does not touch the input
    np.testing.assert_array_equal(mapper(img, train=False), out)
    np.testing.assert_array_equal(img, _image(shape))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float64, np.float32, bool])
def test_output_is_float32_for_any_input_dtype(dtype):
    img = _image((4, 5, 6)).astype(dtype)
    mapper = ChannelMapper([{"merge": [0, 1, 2]}, {"merge": [1, 3], "mode": "max"}, 3, "blank"])
    out = mapper(img, train=False)
    assert out.dtype == np.float32
    f = img.astype(np.float64)
    np.testing.assert_allclose(out[0], f[:3].mean(0), rtol=1e-6)
    np.testing.assert_array_equal(out[1], f[[1, 3]].max(0))
    np.testing.assert_array_equal(out[2], f[3])


def test_plain_spec_matches_select_channels():
    img = _image((5, 9, 8))
    spec = [4, 0, 2]
    out = ChannelMapper(spec)(img, train=True, rng=None)  # nothing random: no rng needed
    np.testing.assert_array_equal(out, select_channels(img, spec, 3, "x").astype(np.float32))


# --- training: seeded draws ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_train_same_seed_same_output_and_valid_choices(shape):
    img = _image(shape)
    spec = [{"random": [3, 4, 5]}, {"merge": [0, 3, 6], "dropout": 0.5}, {"index": 1, "dropout": 0.5}, 2]
    mapper = ChannelMapper(spec)
    a = [mapper(img, train=True, rng=np.random.default_rng(7)) for _ in range(2)]
    np.testing.assert_array_equal(a[0], a[1])
    rng = np.random.default_rng(7)
    draws = [mapper(img, train=True, rng=rng) for _ in range(30)]
    assert any(not np.array_equal(draws[0], d) for d in draws[1:])  # a shared rng moves on
    f = img.astype(np.float32)
    subsets = [[0], [3], [6], [0, 3], [0, 6], [3, 6], [0, 3, 6]]
    for out in draws:
        assert out.dtype == np.float32 and out.shape == (4, *shape[1:])
        assert _channel_of(out[0], img) in (3, 4, 5)
        assert any(np.allclose(out[1], f[s].mean(0), rtol=1e-6) for s in subsets)  # never all dropped
        assert _channel_of(out[2], img) in (1, -1)
        np.testing.assert_array_equal(out[3], f[2])


def test_random_uses_every_member_evenly():
    img = _image((6, 3, 4))
    mapper = ChannelMapper([{"random": [1, 3, 5]}])
    rng = np.random.default_rng(0)
    picks = [_channel_of(mapper(img, train=True, rng=rng)[0], img) for _ in range(600)]
    counts = {c: picks.count(c) for c in (1, 3, 5)}
    assert sum(counts.values()) == 600
    assert all(150 < n < 250 for n in counts.values()), counts  # 200 ± ~4.5 sd


def test_index_dropout_frequency():
    img = _image((3, 4, 5))
    mapper = ChannelMapper([{"index": 2, "dropout": 0.2}, 0])
    rng = np.random.default_rng(1)
    outs = [mapper(img, train=True, rng=rng) for _ in range(2000)]
    dropped = sum(not o[0].any() for o in outs)
    assert all(np.array_equal(o[0], img[2]) for o in outs if o[0].any())  # kept: exactly the channel
    assert abs(dropped / 2000 - 0.2) < 0.03  # sd 0.009
    assert all(np.array_equal(o[1], img[0]) for o in outs)


def test_merge_dropout_frequency_and_at_least_one_kept():
    # channel c holds 2**c everywhere, so the mean of the members kept tells which subset was kept
    p, n = 0.6, 3
    img = np.stack([np.full((3, 4), 2.0**c) for c in range(n)]).astype(np.float32)
    mapper = ChannelMapper([{"merge": [0, 1, 2], "dropout": p}])
    rng = np.random.default_rng(2)
    kept_sets = []
    for _ in range(3000):
        v = float(mapper(img, train=True, rng=rng)[0, 0, 0])
        # mean of kept powers of two: find the subset whose mean is v
        means = {s: np.mean([2.0**c for c in range(n) if s >> c & 1]) for s in range(1, 2**n)}
        match = [s for s, m in means.items() if np.isclose(v, m)]
        assert len(match) == 1
        kept_sets.append(match[0])
    # each member dropped independently with p, except that an all-dropped draw keeps one at random:
    # P(member dropped) = p - p**n / n
    for c in range(n):
        dropped = sum(not (s >> c & 1) for s in kept_sets) / len(kept_sets)
        assert abs(dropped - (p - p**n / n)) < 0.035, (c, dropped)
    assert 0 not in kept_sets


def test_train_without_rng_is_an_error_only_when_something_is_random():
    img = _image((6, 4, 5))
    with pytest.raises(BiosegError, match="needs an rng"):
        ChannelMapper([{"random": [1, 2]}])(img, train=True)
    with pytest.raises(BiosegError, match="needs an rng"):
        ChannelMapper([0, {"index": 1, "dropout": 0.1}])(img, train=True)
    out = ChannelMapper([{"random": [4]}, {"merge": [1, 2], "dropout": 0.0}])(img, train=True)
    np.testing.assert_array_equal(out[0], img[4])
    assert not ChannelMapper([{"random": [4]}, 1, {"index": 1, "dropout": 0}]).stochastic
    assert ChannelMapper([{"random": [4, 5]}]).stochastic


# --- names ---------------------------------------------------------------------------------------------


NAMES = ["DAPI", "GFP", "mCherry", "Cy5"]


def test_names_resolve_to_indices():
    img = _image((4, 5, 6))
    spec = ["Cy5", {"merge": ["DAPI", 1]}, {"random": ["GFP", "mCherry"]}, {"index": "GFP", "dropout": 0.5}]
    mapper = ChannelMapper(spec, channel_names=NAMES)
    by_index = ChannelMapper([3, {"merge": [0, 1]}, {"random": [1, 2]}, {"index": 1, "dropout": 0.5}])
    np.testing.assert_array_equal(mapper(img, train=False), by_index(img, train=False))
    np.testing.assert_array_equal(
        mapper(img, train=True, rng=np.random.default_rng(3)),
        by_index(img, train=True, rng=np.random.default_rng(3)),
    )
    assert mapper.max_index == 3 and mapper.n_out == 4


@pytest.mark.parametrize(
    "spec, names, match",
    [
        (["DAPI"], None, r"entry 0 names channel 'DAPI', but the images carry no channel names; use channel"),
        ([0, "GPF"], NAMES, r"entry 1 names channel 'GPF', which is not among the channels "
         r"\(0: DAPI, 1: GFP, "
         r"2: mCherry, 3: Cy5\)\. Did you mean 'GFP'\?"),
        ([{"merge": [0, "dapi"]}], NAMES, r"'dapi'.*Did you mean 'DAPI'\?"),
        (["GFP"], ["GFP", "GFP"], r"several channels carry"),
        (["Hoechst"], NAMES, r"0: DAPI, 1: GFP, 2: mCherry, 3: Cy5"),
    ],
)
def test_name_errors_list_available_names(spec, names, match):
    with pytest.raises(BiosegError, match=match):
        ChannelMapper(spec, channel_names=names)


# --- image checks --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, match",
    [
        ([0, 1, 5], r"image\.tif has 3 channels; data\.channels entry 2 asks for channel 5: "
         r"use indices 0\.\.2"),
        ([{"merge": [0, 7]}], r"entry 0 asks for channel 7"),
        ([{"random": [1, 9]}], r"entry 0 asks for channel 9"),
        ([-4], r"entry 0 asks for channel -4"),
    ],
)
def test_index_out_of_range_names_image_and_entry(spec, match):
    with pytest.raises(BiosegError, match=match):
        ChannelMapper(spec)(_image((3, 4, 5)), train=False, name="image.tif")


def test_out_of_range_error_shows_the_channel_name():
    expected = r"x\.tif has 2 channels; data\.channels entry 0 asks for channel 3 \('Cy5'\)"
    with pytest.raises(BiosegError, match=expected):
        ChannelMapper(["Cy5"], channel_names=NAMES)(_image((2, 4, 5)), train=False, name="x.tif")


def test_bad_image_shape():
    with pytest.raises(BiosegError, match=r"expected \(C, \*spatial\)"):
        ChannelMapper([0])(np.zeros(5), train=False)


def test_max_index_and_min_channels():
    m = ChannelMapper([1, {"merge": [0, 6]}, {"random": [2, 3]}, "blank"])
    assert (m.n_out, m.max_index, m.min_channels) == (4, 6, 7)
    m = ChannelMapper(["blank", -3])
    assert (m.max_index, m.min_channels) == (-1, 3)


# --- describe / to_config ------------------------------------------------------------------------------


def test_to_config_is_json_and_round_trips():
    spec = [
        2,
        "GFP",
        {"random": [3, 1]},
        {"merge": [0, "Cy5"]},
        {"merge": [0, 3], "mode": "max", "dropout": 0.3},
        {"index": "DAPI", "dropout": 0.2},
        {"index": 1},
        {"blank": True},
    ]
    mapper = ChannelMapper(spec, channel_names=NAMES)
    config = mapper.to_config()
    assert json.loads(json.dumps(config)) == config
    assert config == [
        2,
        "GFP",
        {"random": [3, 1]},
        {"merge": [0, "Cy5"], "mode": "mean", "dropout": 0.0},
        {"merge": [0, 3], "mode": "max", "dropout": 0.3},
        {"index": "DAPI", "dropout": 0.2},
        1,
        "blank",
    ]
    resolved_config = mapper.to_config(resolve_names=True)
    assert resolved_config[1] == 1 and resolved_config[3]["merge"] == [0, 3]
    assert resolved_config[5]["index"] == 0
    again = ChannelMapper(config, channel_names=NAMES)
    assert again.to_config() == config
    img = _image((4, 5, 6))
    np.testing.assert_array_equal(again(img, train=False), mapper(img, train=False))
    resolved = ChannelMapper(mapper.to_config(resolve_names=True))  # no names needed any more
    np.testing.assert_array_equal(resolved(img, train=False), mapper(img, train=False))


def test_describe_one_line_per_output_channel():
    mapper = ChannelMapper(
        [
            1,
            {"random": [3, 2]},
            {"merge": [0, 3], "mode": "max", "dropout": 0.3},
            {"index": 2, "dropout": 0.2},
            "blank",
        ],
        channel_names=NAMES,
    )
    lines = mapper.describe()
    assert len(lines) == mapper.n_out == 5
    assert lines[0] == "0: channel 1 ('GFP')"
    assert "one of channels 3 ('Cy5'), 2 ('mCherry')" in lines[1] and "their mean" in lines[1]
    assert lines[2].startswith("2: max of channels 0 ('DAPI'), 3 ('Cy5'), each dropped with p=0.3")
    assert "replaced by zeros with p=0.2" in lines[3]
    assert lines[4] == "4: blank (zeros)"
    assert ChannelMapper([{"merge": [0, 1]}]).describe() == ["0: mean of channels 0, 1"]
