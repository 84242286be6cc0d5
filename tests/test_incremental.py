"""CheckpointManager(incremental=True): pieces written once, checkpoints restore alone, rotation refcounts.

Every test compares restored arrays bit for bit (``digest``) with copies taken when each step was
saved, and checks the directory's packs against what the remaining manifests reference.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import digest
from hypothesis import given, settings
from hypothesis import strategies as st

import ndckpt
from ndckpt import CheckpointManager, CheckptIOError, FormatError, InvalidArgumentError, UnsupportedError
from ndckpt._incrcheck import describe, verify_manifest
from ndckpt._incremental import PACK_RE, PIECE_BYTES, read_manifest
from ndckpt.cli import main as cli_main
from ndckpt.manager import CorruptCheckpointWarning

MiB = 1 << 20


def packs_on_disk(d: Path) -> set[str]:
    return {p.name for p in d.iterdir() if PACK_RE.fullmatch(p.name)}


def referenced(d: Path) -> set[str]:
    out: set[str] = set()
    for p in d.glob("ckpt-*.ndckpt"):
        out |= {n for n, _ in read_manifest(p).packs}
    return out


def snapshot(state: dict[str, Any]) -> dict[str, Any]:
    return {
        k: snapshot(v) if isinstance(v, dict) else np.array(v, copy=True) if isinstance(v, np.ndarray) else v
        for k, v in state.items()
    }


def same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):
            same(a[k], b[k])
        elif isinstance(b[k], np.ndarray):
            assert isinstance(a[k], np.ndarray), k
            assert digest({k: a[k]}) == digest({k: b[k]}), k
            assert a[k].flags.f_contiguous == b[k].flags.f_contiguous, k
        else:
            assert type(a[k]) is type(b[k]), k
            assert a[k] == b[k], k


def make_state(rng: np.random.Generator) -> dict[str, Any]:
    return {
        "mesh": rng.random(3 * MiB // 8),  # never changes
        "field": rng.random(MiB // 8 + 17).astype(np.float32),  # changes completely
        "front": rng.integers(0, 9, (512, 1024), dtype=np.int32),  # 2 MiB, changes in one place
        "g": {"f": np.asfortranarray(rng.random((300, 70))), "empty": {}, "step": 0, "s": np.float64(1.5)},
        "rec": np.zeros(7, dtype=[("a", "<i2"), ("b", ">f8")]),
        "nil": np.empty((0, 3)),
    }


def advance(state: dict[str, Any], rng: np.random.Generator, step: int) -> None:
    state["field"][:] = rng.random(state["field"].size)
    state["front"][step % 512, :] = step
    state["g"]["step"] = step


@pytest.mark.parametrize("style", ["raw", "lz4", {"field": "lz4", "g": "lz4"}])
def test_saves_write_only_changed_pieces_and_every_step_restores_alone(tmp_path: Path, style: Any) -> None:
    rng = np.random.default_rng(1)
    state = make_state(rng)
    saved: dict[int, dict[str, Any]] = {}
    with CheckpointManager(tmp_path, keep=3, style=style, incremental=True) as mgr:
        for step in range(6):
            advance(state, rng, step)
            assert mgr.save(step, state, metadata={"step": step})
            saved[step] = snapshot(state)
            counts = mgr.last_save_bytes
            assert counts is not None
            total = sum(np.asarray(a).nbytes for a in [state["mesh"], state["field"], state["front"], state["g"]["f"]])
            if step > 0:  # the field (all its pieces) and one piece of the front
                assert counts["new"] == state["field"].nbytes + PIECE_BYTES
                assert counts["new"] + counts["shared"] == total + state["rec"].nbytes
        assert mgr.steps() == [3, 4, 5]
        for s in mgr.steps():
            got = mgr.restore(s)
            same(got, saved[s])
            assert mgr.metadata(s) == {"step": s}
        got = mgr.restore(5, mmap=False)
        same(got, saved[5])
        assert got["mesh"].flags.writeable
        assert packs_on_disk(tmp_path) == referenced(tmp_path)


def test_raw_arrays_written_whole_come_back_as_zero_copy_views(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    state = make_state(rng)
    with CheckpointManager(tmp_path, incremental=True) as mgr:
        mgr.save(0, state)
        got = mgr.restore()
    for name in ("mesh", "field", "front"):
        assert not got[name].flags.writeable, name
        assert not got[name].flags.owndata, name
    same(got, snapshot(state))


def test_out_is_filled_in_place_for_raw_and_lz4(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    state = make_state(rng)
    with CheckpointManager(tmp_path, incremental=True, style={"field": "lz4"}) as mgr:
        mgr.save(0, state)
        advance(state, rng, 1)
        mgr.save(1, state)
        out = {"field": np.empty_like(state["field"]), "front": np.empty_like(state["front"])}
        got = mgr.restore(out=out)
    assert got["field"] is out["field"]
    assert got["front"] is out["front"]
    same(got, snapshot(state))
    with CheckpointManager(tmp_path, incremental=True) as mgr, pytest.raises(InvalidArgumentError):
        mgr.restore(out={"field": np.empty(3)})


def test_nothing_changed_writes_no_pack(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    state = make_state(rng)
    with CheckpointManager(tmp_path, incremental=True, keep=None) as mgr:
        mgr.save(0, state)
        before = packs_on_disk(tmp_path)
        mgr.save(1, state)
        assert mgr.last_save_bytes is not None
        assert mgr.last_save_bytes["new"] == 0
        assert packs_on_disk(tmp_path) == before
        assert mgr.path(1).stat().st_size < 64 * 1024
        same(mgr.restore(1), snapshot(state))


def test_rotation_frees_exactly_what_no_retained_checkpoint_needs(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    state = make_state(rng)
    with CheckpointManager(tmp_path, incremental=True, keep=2, keep_every=4) as mgr:
        saved = {}
        for step in range(1, 11):
            advance(state, rng, step)
            mgr.save(step, state)
            saved[step] = snapshot(state)
            assert packs_on_disk(tmp_path) == referenced(tmp_path)
        assert mgr.steps() == [4, 8, 9, 10]
        for s in mgr.steps():
            same(mgr.restore(s), saved[s])
    # step 1's pack holds the mesh: still needed by every checkpoint
    assert any(PACK_RE.fullmatch(n).group(1) == "000000000000" for n in packs_on_disk(tmp_path))  # type: ignore[union-attr]


def test_full_every_bounds_how_far_back_a_checkpoint_reaches(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    state = make_state(rng)
    with CheckpointManager(tmp_path, incremental=True, keep=2, full_every=3) as mgr:
        for step in range(9):
            advance(state, rng, step)
            mgr.save(step, state)
            man = read_manifest(mgr.path(step))
            assert man.seq == step
            assert len(man.packs) <= (step % 3) + 1
            if step % 3 == 0:
                assert [n for n, _ in man.packs] == [man.packs[man.own][0]]  # type: ignore[index]
            assert packs_on_disk(tmp_path) == referenced(tmp_path)
        assert len(packs_on_disk(tmp_path)) <= 3
        same(mgr.restore(), snapshot(state))
    with pytest.raises(InvalidArgumentError, match="full_every"):
        CheckpointManager(tmp_path, full_every=2)


def test_missing_pack_names_it_and_restore_falls_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    state = make_state(rng)
    with CheckpointManager(tmp_path, incremental=True, keep=None) as mgr:
        mgr.save(0, state)
        first = snapshot(state)
        advance(state, rng, 1)
        mgr.save(1, state)
        man = read_manifest(mgr.path(1))
        own = man.packs[man.own][0]  # type: ignore[index]
        (tmp_path / own).unlink()
        with pytest.raises(CheckptIOError, match=own) as ei:
            mgr.restore(1)
        assert "piece p" in str(ei.value)
        assert "'field'" in str(ei.value)
        with pytest.warns(CorruptCheckpointWarning, match="step 1"):
            got = mgr.restore()
        assert mgr.restored_step == 0
        same(got, first)
        assert cli_main(["verify", str(mgr.path(1))]) == 1


def test_damaged_piece_is_caught_by_verify_and_restore_verify(tmp_path: Path, capsys: Any) -> None:
    rng = np.random.default_rng(8)
    state = make_state(rng)
    with CheckpointManager(tmp_path, incremental=True, keep=None) as mgr:
        mgr.save(0, state)
        assert cli_main(["verify", str(mgr.path(0))]) == 0
        (pack,) = packs_on_disk(tmp_path)
        p = tmp_path / pack
        raw = bytearray(p.read_bytes())
        with ndckpt.open(p) as r:
            head = r["p000000000"][:1].tobytes()  # the first mesh piece: a RAW frame at a page boundary
        pos = next(i for i in range(4096, len(raw), 4096) if raw[i : i + len(head)] == head)
        raw[pos + 100] ^= 0xFF
        p.write_bytes(bytes(raw))
        capsys.readouterr()
        assert cli_main(["verify", str(mgr.path(0))]) == 1
        assert "FAILED" in capsys.readouterr().err
        with pytest.raises(FormatError, match=r"p000000000|damaged|checksum"):
            mgr.restore(0, verify=True)
        assert verify_manifest(mgr.path(0))


def test_unchanged_hint_skips_hashing_and_a_false_hint_is_caught_by_verify(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    state = make_state(rng)
    with CheckpointManager(tmp_path, incremental=True, keep=None) as mgr:
        mgr.save(0, state)
        advance(state, rng, 1)
        mgr.save(1, state, unchanged=["mesh", "g/f"])  # true promise
        assert describe(mgr.path(1))["arrays"][0]["hinted"]
        assert verify_manifest(mgr.path(1)) == []
        same(mgr.restore(1), snapshot(state))
        state["mesh"] += 1.0  # the caller changes it ...
        mgr.save(2, state, unchanged=["mesh"])  # ... and still promises it did not
        problems = verify_manifest(mgr.path(2))
        assert len(problems) == 1
        assert "'mesh'" in problems[0]
        assert "unchanged" in problems[0]
        assert cli_main(["verify", str(mgr.path(2))]) == 1
        with pytest.raises(InvalidArgumentError, match="nope"):
            mgr.save(3, state, unchanged=["nope"])
    with CheckpointManager(tmp_path / "plain") as mgr, pytest.raises(InvalidArgumentError, match="incremental"):
        mgr.save(0, state, unchanged=["mesh"])


def test_info_and_convert(tmp_path: Path, capsys: Any) -> None:
    rng = np.random.default_rng(10)
    state = make_state(rng)
    with CheckpointManager(tmp_path / "d", incremental=True) as mgr:
        mgr.save(0, state, metadata={"run": "x"})
        advance(state, rng, 1)
        mgr.save(1, state, metadata={"run": "y"})
        path = mgr.path(1)
    capsys.readouterr()
    assert cli_main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "incremental" in text
    assert "shared" in text
    assert "mesh" in text
    d = describe(path)
    assert d["new"] == state["field"].nbytes + PIECE_BYTES
    out = tmp_path / "alone.ndckpt"
    assert cli_main(["convert", str(path), str(out)]) == 0
    same(ndckpt.load(out), snapshot(state))
    with ndckpt.open(out) as r:
        assert r.metadata == {"run": "y"}


def test_async_save(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    state = make_state(rng)
    with CheckpointManager(tmp_path, incremental=True, async_save=True, keep=2) as mgr:
        saved = {}
        for step in range(5):
            advance(state, rng, step)
            mgr.save(step, state)
            saved[step] = snapshot(state)
            state["field"][:] = -1  # modified while the save is in flight: must not leak in
        mgr.wait()
        for s in mgr.steps():
            same(mgr.restore(s), saved[s])
        assert packs_on_disk(tmp_path) == referenced(tmp_path)


def test_comm_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError, match="comm"):
        CheckpointManager(tmp_path, incremental=True, comm=object())


def test_plain_checkpoints_in_the_directory_still_restore(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    state = make_state(rng)
    with CheckpointManager(tmp_path, keep=None) as mgr:
        mgr.save(0, state)
    first = snapshot(state)
    with CheckpointManager(tmp_path, keep=None, incremental=True) as mgr:
        advance(state, rng, 1)
        mgr.save(1, state)
        same(mgr.restore(0), first)
        same(mgr.restore(1), snapshot(state))


arrays_st = st.lists(
    st.tuples(
        st.sampled_from(["<f8", "<i2", "|u1", ">i4", "<c8"]),
        st.integers(0, 300_000),
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=15, deadline=None)
@given(
    spec=arrays_st, edits=st.lists(st.tuples(st.integers(0, 3), st.floats(0, 1)), max_size=8), seed=st.integers(0, 99)
)
def test_any_sequence_of_edits_restores_bit_exactly(tmp_path_factory: Any, spec: Any, edits: Any, seed: int) -> None:
    d = tmp_path_factory.mktemp("h")
    rng = np.random.default_rng(seed)
    state = {
        f"a{i}": rng.integers(0, 255, n * np.dtype(dt).itemsize, dtype=np.uint8).view(dt)
        for i, (dt, n) in enumerate(spec)
    }
    saved = {}
    with CheckpointManager(d, incremental=True, keep=2, style="lz4" if seed % 2 else "raw") as mgr:
        mgr.save(0, state)
        saved[0] = snapshot(state)
        for step, (which, where) in enumerate(edits, start=1):
            a = state[f"a{which % len(state)}"]
            if a.size:
                u8 = a.view(np.uint8)
                u8[int(where * (u8.size - 1))] ^= 0x5A
            mgr.save(step, state)
            saved[step] = snapshot(state)
        for s in mgr.steps():
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                same(mgr.restore(s), saved[s])
        assert packs_on_disk(d) == referenced(d)


def test_an_array_whose_pieces_live_in_several_packs_is_still_a_zero_copy_view(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    state = make_state(rng)
    with CheckpointManager(tmp_path, incremental=True, keep=None) as mgr:
        mgr.save(0, state)
        advance(state, rng, 1)  # one piece of "front" changes: its pieces now come from two packs
        mgr.save(1, state)
        man = read_manifest(mgr.path(1))
        front = next(e for e in man.arrays if e.name == "front")
        assert len({pi for pi, _, _, _ in man.refs(front)}) == 2
        got = mgr.restore(1)
        same(got, snapshot(state))
        assert not got["front"].flags.writeable
        assert not got["front"].flags.owndata
        for p in tmp_path.glob("pack-*"):
            p.rename(p.with_suffix(".moved"))  # the view keeps its mapping
        assert digest({"f": got["front"]}) == digest({"f": state["front"]})
