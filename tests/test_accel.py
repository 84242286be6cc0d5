"""The optional compiled filters (accel/, module ndckpt_accel) against ndckpt.filters' numpy code.

The numpy code is the reference (tests/test_filters.py compares it with the plain definition);
the compiled kernels must give the same bytes for every kind, item size (1..16, and some up to
255), length around the block boundaries, block size and byte pattern, in both directions.
Tests that need the compiled module skip when it is not installed (``pip install ./accel``);
.ci/run installs it, so they run there. The dispatch tests run either way.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ndckpt import _accel, filters
from ndckpt.filters import BLOCK, FILTERS, filter_into, unfilter_into

U8 = np.ndarray[Any, np.dtype[np.uint8]]

needs_accel = pytest.mark.skipif(
    not _accel.available(), reason="the compiled filters are not installed (pip install ./accel)"
)

LENGTHS = st.one_of(
    st.sampled_from([0, 1, 2, 7, 8, 9, 15, 16, 17, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 5, 5 * BLOCK]),
    st.integers(0, 3 * BLOCK + 300),
)
ITEMSIZES = st.one_of(st.integers(1, 16), st.sampled_from([17, 24, 31, 32, 40, 64, 100, 128, 248, 255]))
KINDS = st.sampled_from(FILTERS)


@pytest.fixture(autouse=True)
def default_selection() -> Iterator[None]:
    """Every test starts and ends with the default selection (the environment's)."""
    _accel.use(None)
    yield
    _accel.use(None)


def run(fn: Any, compiled: bool, kind: str, x: U8, s: int, block: int = BLOCK) -> U8:
    """``fn`` (filter_into or unfilter_into) of ``x`` by the selected implementation."""
    out = np.full(x.size, 0xA5, np.uint8)
    _accel.use(compiled)
    try:
        fn(kind, x, out, s, block=block)
    finally:
        _accel.use(None)
    return out


def data(seed: int, n: int, pattern: str) -> U8:
    rng = np.random.default_rng(seed)
    if pattern == "random":
        return rng.integers(0, 256, n, dtype=np.uint8)
    if pattern == "smooth":  # float64 bytes of a slowly varying field: long runs in the planes
        return (300 + np.sin(np.arange(-(-n // 8)) / 500.0)).view(np.uint8)[:n].copy()
    return np.full(n, 0xFF, np.uint8)  # all ones: every plane sum wraps around 256


@needs_accel
@settings(max_examples=200, deadline=None)
@given(
    kind=KINDS,
    s=ITEMSIZES,
    n=LENGTHS,
    seed=st.integers(0, 2**32 - 1),
    pattern=st.sampled_from(["random", "random", "smooth", "ones"]),
)
def test_compiled_filter_and_inverse_equal_numpy(kind: str, s: int, n: int, seed: int, pattern: str) -> None:
    x = data(seed, n, pattern)
    ref = run(filter_into, False, kind, x, s)
    got = run(filter_into, True, kind, x, s)
    assert np.array_equal(got, ref)
    assert np.array_equal(run(unfilter_into, True, kind, got, s), x)


@needs_accel
@settings(max_examples=150, deadline=None)
@given(kind=KINDS, s=ITEMSIZES, n=st.integers(0, 3 * BLOCK), seed=st.integers(0, 2**32 - 1))
def test_compiled_inverse_of_any_bytes_equals_numpy(kind: str, s: int, n: int, seed: int) -> None:
    """Every byte string is valid filtered input; both inverses agree on it."""
    x = data(seed, n, "random")
    got = run(unfilter_into, True, kind, x, s)
    assert np.array_equal(got, run(unfilter_into, False, kind, x, s))
    assert np.array_equal(run(filter_into, True, kind, got, s), x)


@needs_accel
@settings(max_examples=100, deadline=None)
@given(
    kind=KINDS,
    s=ITEMSIZES,
    n=st.integers(0, 5000),
    block=st.one_of(st.integers(1, 600), st.sampled_from([8, 64, 4096, 4097])),
    seed=st.integers(0, 2**32 - 1),
)
def test_compiled_equals_numpy_for_any_block_size(kind: str, s: int, n: int, block: int, seed: int) -> None:
    x = data(seed, n, "random")
    ref = run(filter_into, False, kind, x, s, block)
    assert np.array_equal(run(filter_into, True, kind, x, s, block), ref)
    assert np.array_equal(run(unfilter_into, True, kind, ref, s, block), x)


@needs_accel
def test_compiled_kernels_refuse_bad_arguments_and_leave_dst_untouched() -> None:
    mod = importlib.import_module(_accel.MODULE)
    src, dst = np.arange(64, dtype=np.uint8), np.zeros(64, np.uint8)
    for args, match in [
        ((2, src, dst, 4, BLOCK), "kind"),
        ((0, src, dst, 0, BLOCK), "item size"),
        ((1, src, dst, 256, BLOCK), "item size"),
        ((0, src, dst, 4, 0), "block"),
        ((0, src, dst[:63], 4, BLOCK), "equal"),
        ((0, src, src, 4, BLOCK), "overlap"),
    ]:
        for call in (mod.filter, mod.unfilter):
            with pytest.raises(ValueError, match=match):
                call(*args)
    assert not dst.any()
    with pytest.raises((TypeError, BufferError)):
        mod.filter(0, src, bytes(64), 4, BLOCK)  # read-only destination


@needs_accel
def test_compiled_kernels_take_any_buffer_without_copying() -> None:
    src = bytes(range(256)) * 300
    dst = bytearray(len(src))
    filter_into("delta", src, dst, 4)
    view = memoryview(bytearray(len(src)))
    unfilter_into("delta", bytes(dst), view, 4)
    assert bytes(view) == src
    ref = run(filter_into, False, "delta", np.frombuffer(src, np.uint8), 4)
    assert bytes(dst) == ref.tobytes()


@needs_accel
def test_threads_filter_concurrently_with_the_same_results() -> None:
    """Four threads on separate buffers (the kernels release the GIL) give the serial bytes."""
    xs = [data(i, 2 * BLOCK + 100 * i, "random") for i in range(4)]
    refs = [run(filter_into, False, "delta", x, 8) for x in xs]
    _accel.use(True)
    outs = [np.empty_like(x) for x in xs]
    backs = [np.empty_like(x) for x in xs]

    def work(i: int) -> None:
        for _ in range(20):
            filter_into("delta", xs[i], outs[i], 8)
            unfilter_into("delta", outs[i], backs[i], 8)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for x, ref, out, back in zip(xs, refs, outs, backs, strict=True):
        assert np.array_equal(out, ref)
        assert np.array_equal(back, x)


# -- dispatch ------------------------------------------------------------------------------------


class Spy:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int, int, int]] = []

    def filter(self, kind: int, src: Any, dst: Any, itemsize: int, block: int, /) -> None:
        self.calls.append(("filter", kind, len(src), itemsize, block))

    def unfilter(self, kind: int, src: Any, dst: Any, itemsize: int, block: int, /) -> None:
        self.calls.append(("unfilter", kind, len(src), itemsize, block))


def test_filters_dispatch_to_the_selected_kernels_after_checking_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy()
    monkeypatch.setattr(_accel, "kernels", lambda: spy)
    x, out = np.zeros(100, np.uint8), np.zeros(100, np.uint8)
    filter_into("delta", x, out, 8)
    unfilter_into("shuffle", x, out, 2, block=16)
    assert spy.calls == [("filter", 1, 100, 8, BLOCK), ("unfilter", 0, 100, 2, 16)]
    with pytest.raises(filters.InvalidArgumentError):
        filter_into("delta", x, x, 8)  # the checks run first: the kernels never see bad buffers
    assert len(spy.calls) == 2


def test_use_false_selects_numpy_and_use_none_restores_the_default() -> None:
    default = _accel.active()
    _accel.use(False)
    assert not _accel.active()
    assert _accel.kernels() is None
    _accel.use(None)
    assert _accel.active() == default


def python(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != _accel.ENV} | env
    done = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


STATE = "from ndckpt import _accel; print(_accel.available(), _accel.active())"


def test_the_environment_variable_refuses_the_accelerator() -> None:
    found = _accel.available()
    assert python(STATE) == f"{found} {found}"
    assert python(STATE, NDCKPT_NO_ACCEL="1") == f"{found} False"
    assert python(STATE, NDCKPT_NO_ACCEL="0") == f"{found} {found}"


def test_without_the_accelerator_numpy_runs_and_use_true_refuses() -> None:
    code = (
        "import sys; sys.modules['ndckpt_accel'] = None\n"  # makes `import ndckpt_accel` fail
        "import numpy as np; from ndckpt import _accel, filters\n"
        "print(_accel.available(), _accel.active())\n"
        "x = np.arange(1000, dtype=np.uint16).view(np.uint8); y = np.empty_like(x)\n"
        "filters.filter_into('shuffle', x, y, 2); print(y[:4].tolist())\n"
        "try:\n    _accel.use(True)\nexcept RuntimeError as e:\n    print('refused', 'pip install ./accel' in str(e))\n"
    )
    assert python(code).splitlines() == ["False False", "[0, 1, 2, 3]", "refused True"]


def test_an_accelerator_of_another_abi_version_is_ignored() -> None:
    code = (
        "import sys, types; m = types.ModuleType('ndckpt_accel'); m.ABI_VERSION = 999\n"
        "sys.modules['ndckpt_accel'] = m\n" + STATE
    )
    assert python(code) == "False False"
