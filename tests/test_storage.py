"""The content-addressed cache: verified before use, rebuilt when corrupt, never aliased by run dirs."""
import logging

import pytest

from spelling_exp.storage.cache import ArtifactCache, publish


def _builder(calls):
    def build(tmp):
        calls.append(tmp)
        (tmp / "rows.jsonl").write_text("".join(f'{{"i": {i}}}\n' for i in range(100)))
        (tmp / "meta.json").write_text('{"n": 100}\n')
    return build


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "extra"])
def test_corrupt_entry_is_rebuilt_not_used(tmp_path, caplog, damage):
    cache, calls = ArtifactCache(tmp_path, "data"), []
    entry, hit = cache.get_or_build("k1", {"x": 1}, _builder(calls))
    assert not hit and len(calls) == 1 and not cache.problems("k1")
    rows = entry / "rows.jsonl"
    if damage == "truncate":
        rows.write_text(rows.read_text()[:100])
    elif damage == "flip":
        rows.write_text(rows.read_text().replace('"i": 7', '"i": 8'))  # same size, other content
    elif damage == "delete":
        rows.unlink()
    else:
        (entry / "stray.txt").write_text("?")
    assert cache.problems("k1")
    with caplog.at_level(logging.WARNING):
        entry, hit = cache.get_or_build("k1", {"x": 1}, _builder(calls))
    assert not hit and len(calls) == 2, "a corrupt entry must be rebuilt"
    assert "is corrupt" in caplog.text and not cache.problems("k1")
    assert rows.read_text().count("\n") == 100
    assert not list(tmp_path.glob("data/.tmp-*")) and not list(tmp_path.glob("data/.corrupt-*"))
    assert cache.get_or_build("k1", {"x": 1}, _builder(calls)) == (entry, True) and len(calls) == 2


def test_run_dir_edits_never_reach_the_cache(tmp_path):
    cache = ArtifactCache(tmp_path / "cache", "eval")
    entry, _ = cache.get_or_build("k", {}, _builder([]))
    run = tmp_path / "run"
    publish(entry, run)
    with open(run / "rows.jsonl", "a") as f:  # e.g. a resumed evaluation appending predictions
        f.write('{"i": 100}\n')
    (run / "meta.json").write_text("edited")
    assert not cache.problems("k")
    assert (entry / "rows.jsonl").read_text().count("\n") == 100 and (entry / "meta.json").read_text() != "edited"


def test_publishing_again_leaves_no_temp_files(tmp_path):
    cache = ArtifactCache(tmp_path / "cache", "data")
    entry, _ = cache.get_or_build("k", {}, _builder([]))
    run = tmp_path / "run"
    for _ in range(3):  # reruns and resumes publish over files that are already there
        publish(entry, run)
    assert sorted(p.name for p in run.iterdir()) == ["cache_key.json", "meta.json", "rows.jsonl"]


def test_compute_in_place_hit_publishes_copies(tmp_path):
    cache, out = ArtifactCache(tmp_path / "cache", "eval"), tmp_path / "a"

    def compute():
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text("{}\n")

    assert cache.compute_in_place("k", {}, out, compute) is False
    other = tmp_path / "b"
    assert cache.compute_in_place("k", {}, other, compute) is True
    assert (other / "metrics.json").stat().st_ino != (cache.path("k") / "metrics.json").stat().st_ino
