"""The Gray-Scott demo kernel: physics, determinism, bit-identical resume, state round trip."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from helpers import nest
from hypothesis import given, settings
from hypothesis import strategies as st

from ndckpt import Checkpt, FrameStyle, Restore, frame_style_is_supported
from ndckpt.demo import GrayScott, StateTree


def _flatten(tree: StateTree, prefix: str = "") -> dict[str, np.ndarray[Any, Any]]:
    out: dict[str, np.ndarray[Any, Any]] = {}
    for key in sorted(tree):
        val = tree[key]
        if isinstance(val, dict):
            out.update(_flatten(val, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = val
    return out


def _assert_same_state(a: StateTree, b: StateTree) -> None:
    fa, fb = _flatten(a), _flatten(b)
    assert list(fa) == list(fb)
    for k in fa:
        assert fa[k].dtype == fb[k].dtype, k
        assert fa[k].shape == fb[k].shape, k
        assert fa[k].tobytes() == fb[k].tobytes(), k


def _roll_laplacian(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return (
        -4.0 * a
        + np.roll(a, 1, axis=0)
        + np.roll(a, -1, axis=0)
        + np.roll(a, 1, axis=1)
        + np.roll(a, -1, axis=1)
    )


def test_state_layout() -> None:
    sim = GrayScott(n=16, seed=0, history=8)
    flat = _flatten(sim.state())
    expected = {
        "fields/u": (np.float64, (16, 16)),
        "fields/v": (np.float64, (16, 16)),
        "stats/activation_count": (np.int64, (16, 16)),
        "stats/mask": (np.uint8, (16, 16)),
        "stats/diagnostics": (np.float32, (8, 4)),
        "rng/bit_generator": (np.uint8, (5,)),
        "rng/state": (np.uint64, (2,)),
        "rng/inc": (np.uint64, (2,)),
        "rng/has_uint32": (np.int64, ()),
        "rng/uinteger": (np.uint64, ()),
        "params/F": (np.float64, ()),
        "params/k": (np.float64, ()),
        "params/Du": (np.float64, ()),
        "params/Dv": (np.float64, ()),
        "params/dt": (np.float64, ()),
        "params/threshold": (np.float64, ()),
        "params/noise": (np.float64, ()),
        "step": (np.int64, ()),
        "time": (np.float64, ()),
    }
    assert {k: (a.dtype, a.shape) for k, a in flat.items()} == {
        k: (np.dtype(d), s) for k, (d, s) in expected.items()
    }
    assert bytes(flat["rng/bit_generator"]) == b"PCG64"
    assert float(flat["params/F"]) == 0.037
    assert float(flat["params/k"]) == 0.06
    assert float(flat["params/Du"]) == 0.16
    assert float(flat["params/Dv"]) == 0.08
    assert float(flat["params/dt"]) == 1.0


def test_laplacian_is_periodic_five_point() -> None:
    a = np.random.default_rng(5).random((7, 9))
    out = np.empty_like(a)
    GrayScott._laplacian(a, out)
    np.testing.assert_allclose(out, _roll_laplacian(a), rtol=0, atol=1e-15)
    # A constant field has zero Laplacian, a single spike spreads to its 4 periodic neighbours.
    spike = np.zeros((5, 5))
    spike[0, 0] = 1.0
    GrayScott._laplacian(spike, out := np.empty_like(spike))
    assert out[0, 0] == -4.0
    assert out[1, 0] == out[4, 0] == out[0, 1] == out[0, 4] == 1.0
    assert np.count_nonzero(out) == 5


def test_one_step_matches_reference_euler_update() -> None:
    sim = GrayScott(n=24, seed=9)
    sim.step(3)
    before = sim.state(copy=True)
    u, v = before["fields"]["u"], before["fields"]["v"]
    assert isinstance(u, np.ndarray)
    assert isinstance(v, np.ndarray)
    p = {k: float(a) for k, a in _flatten(before).items() if k.startswith("params/")}
    F, k, Du, Dv, dt = p["params/F"], p["params/k"], p["params/Du"], p["params/Dv"], p["params/dt"]
    # Replay the generator from the saved state to get the step's noise.
    rng = GrayScott.from_state(before)._rng
    noise = (rng.random(u.shape) - 0.5) * p["params/noise"]
    uvv = u * v * v
    u1 = u + dt * (Du * _roll_laplacian(u) - uvv + F * (1 - u))
    v1 = np.maximum(v + dt * (Dv * _roll_laplacian(v) + uvv - (F + k) * v) + noise, 0.0)
    sim.step()
    np.testing.assert_allclose(sim.u, u1, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(sim.v, v1, rtol=1e-13, atol=1e-15)
    after = sim.state()
    mask, count, diag = (after["stats"][x] for x in ("mask", "activation_count", "diagnostics"))
    assert isinstance(mask, np.ndarray)
    assert isinstance(count, np.ndarray)
    assert isinstance(diag, np.ndarray)
    np.testing.assert_array_equal(mask, (sim.v > p["params/threshold"]).astype(np.uint8))
    before_count = before["stats"]["activation_count"]
    np.testing.assert_array_equal(count, before_count + mask)
    assert int(after["step"]) == 4
    assert float(after["time"]) == 4 * dt
    row = diag[3]
    np.testing.assert_allclose(
        row, [sim.u.mean(), sim.v.mean(), mask.mean(), sim.v.max()], rtol=1e-6
    )
    assert not diag[4:].any()


def test_pattern_forms_and_activity_is_counted() -> None:
    sim = GrayScott(n=64, seed=0)
    sim.step(400)
    s = _flatten(sim.state())
    v = s["fields/v"]
    assert v.min() >= 0.0
    assert v.max() < 1.0
    assert 0.01 < s["stats/mask"].mean() < 0.9  # spots grew and did not fill the grid
    assert s["stats/activation_count"].max() <= 400
    assert s["stats/activation_count"].max() > 100


def test_same_seed_same_run_different_seed_different_run() -> None:
    a, b, c = GrayScott(n=32, seed=7), GrayScott(n=32, seed=7), GrayScott(n=32, seed=8)
    for sim in (a, b, c):
        sim.step(25)
    assert a.digest() == b.digest()
    assert a.digest() != c.digest()
    a.step()
    assert a.digest() != b.digest()


@pytest.mark.parametrize("copy", [False, True])
def test_resume_100_equals_40_then_60(copy: bool) -> None:
    straight = GrayScott(n=64, seed=3)
    straight.step(100)
    first = GrayScott(n=64, seed=3)
    first.step(40)
    resumed = GrayScott.from_state(first.state(copy=copy))
    del first
    resumed.step(60)
    assert resumed.digest() == straight.digest()
    _assert_same_state(resumed.state(), straight.state())


def test_resume_across_diagnostics_growth() -> None:
    straight = GrayScott(n=16, seed=1, history=4)
    straight.step(21)
    part = GrayScott(n=16, seed=1, history=4)
    part.step(4)  # exactly full: the next step grows the array
    resumed = GrayScott.from_state(part.state())
    resumed.step(17)
    assert resumed.digest() == straight.digest()
    diag = straight.state()["stats"]["diagnostics"]
    assert isinstance(diag, np.ndarray)
    assert diag.shape == (32, 4)


@settings(max_examples=20)
@given(
    n=st.integers(3, 20),
    seed=st.integers(0, 2**64 - 1),
    split=st.integers(0, 12),
    rest=st.integers(0, 12),
    history=st.integers(1, 6),
)
def test_resume_at_any_point_is_bit_identical(
    n: int, seed: int, split: int, rest: int, history: int
) -> None:
    straight = GrayScott(n=n, seed=seed, history=history)
    straight.step(split + rest)
    part = GrayScott(n=n, seed=seed, history=history)
    part.step(split)
    resumed = GrayScott.from_state(part.state())
    resumed.step(rest)
    assert resumed.digest() == straight.digest()


def test_state_round_trip_through_from_state() -> None:
    sim = GrayScott(n=20, seed=4, history=3)
    sim.step(7)
    state = sim.state()
    rebuilt = GrayScott.from_state(state)
    _assert_same_state(rebuilt.state(), state)
    assert rebuilt.digest() == sim.digest()
    assert rebuilt.step_count == 7
    assert rebuilt.time == sim.time
    # The rebuilt simulation owns its memory: stepping it leaves the original alone.
    d0 = sim.digest()
    rebuilt.step()
    assert sim.digest() == d0


def test_rng_state_round_trips_including_buffered_uint32() -> None:
    sim = GrayScott(n=8, seed=11)
    sim._rng.integers(0, 10, dtype=np.uint32)  # leaves a buffered 32-bit half in the state
    assert sim._rng.bit_generator.state["has_uint32"] == 1
    rebuilt = GrayScott.from_state(sim.state())
    assert rebuilt._rng.bit_generator.state == sim._rng.bit_generator.state
    assert rebuilt._rng.integers(0, 2**32, dtype=np.uint32) == sim._rng.integers(
        0, 2**32, dtype=np.uint32
    )


def test_state_views_alias_and_copies_do_not() -> None:
    sim = GrayScott(n=16, seed=2)
    view, copy = sim.state(), sim.state(copy=True)
    u_view, u_copy = view["fields"]["u"], copy["fields"]["u"]
    assert isinstance(u_view, np.ndarray)
    assert isinstance(u_copy, np.ndarray)
    assert not u_view.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        u_view[0, 0] = 1.0
    assert np.shares_memory(u_view, sim.u)
    assert not np.shares_memory(u_copy, sim.u)
    sim.step()
    assert not np.array_equal(u_view, u_copy)  # the view follows the live field
    np.testing.assert_array_equal(u_view, sim.u)


def test_resume_through_the_frame_engine() -> None:
    """Save the state with Checkpt (one frame), restore it with Restore, and continue."""
    style = FrameStyle.LZ4 if frame_style_is_supported(FrameStyle.LZ4) else FrameStyle.RAW
    sim = GrayScott(n=48, seed=5)
    sim.step(30)
    flat = _flatten(sim.state())
    f = io.BytesIO()
    with Checkpt.stream(f) as ck, ck.frame(style):
        for arr in flat.values():
            ck.buf(arr)
    out = {k: np.empty_like(a) for k, a in flat.items()}
    with Restore.mmio(f.getvalue()) as rs, rs.frame(style):
        for arr in out.values():
            rs.buf(arr)
    resumed = GrayScott.from_state(nest(out))
    sim.step(20)
    resumed.step(20)
    assert resumed.digest() == sim.digest()


def _without(tree: StateTree, path: str) -> StateTree:
    flat = _flatten(tree)
    del flat[path]
    return nest(flat)


def _replaced(tree: StateTree, path: str, value: np.ndarray[Any, Any]) -> StateTree:
    flat = _flatten(tree)
    flat[path] = value
    return nest(flat)


def test_from_state_rejects_bad_input() -> None:
    good = GrayScott(n=8, seed=0, history=4).state(copy=True)
    GrayScott.from_state(good)  # sanity: the unmodified state is accepted
    with pytest.raises(ValueError, match="missing entry 'rng/inc'"):
        GrayScott.from_state(_without(good, "rng/inc"))
    with pytest.raises(ValueError, match="'fields/v' has dtype float32"):
        GrayScott.from_state(_replaced(good, "fields/v", np.zeros((8, 8), np.float32)))
    with pytest.raises(ValueError, match="'stats/mask' has shape"):
        GrayScott.from_state(_replaced(good, "stats/mask", np.zeros((8, 9), np.uint8)))
    with pytest.raises(ValueError, match="must be n x n"):
        GrayScott.from_state(_replaced(good, "fields/u", np.zeros((8, 9))))
    bad_name = np.frombuffer(b"MT19937", np.uint8).copy()
    with pytest.raises(ValueError, match="expected 'PCG64'"):
        GrayScott.from_state(_replaced(good, "rng/bit_generator", bad_name))
    with pytest.raises(ValueError, match="step 5 outside"):
        GrayScott.from_state(_replaced(good, "step", np.array(5, np.int64)))
    with pytest.raises(ValueError, match="values other than 0 and 1"):
        GrayScott.from_state(_replaced(good, "stats/mask", np.full((8, 8), 2, np.uint8)))
    with pytest.raises(ValueError, match="is a group"):
        GrayScott.from_state({**good, "step": {"x": np.zeros(1)}})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"n": 2}, "n must be"), ({"n": 4.0}, "n must be"), ({"history": 0}, "history must be")],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GrayScott(**kwargs)


def test_step_rejects_bad_counts() -> None:
    sim = GrayScott(n=8)
    with pytest.raises(ValueError, match="k must be"):
        sim.step(-1)
    sim.step(0)
    assert sim.step_count == 0
