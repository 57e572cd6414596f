"""Evaluation on the real embedded SmolLM2 model: a handful of questions so the suite stays fast."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from helpers import ROOT, make_config, make_random_adapter, run_cli

pytestmark = pytest.mark.slow  # real CLI runs on real tokenizers / the real model

EVAL = ["stage=eval", "data=small", "eval.n_questions=6", "eval.batch_size=4", "eval.max_new_tokens=24"]


def _metrics(d):
    m = json.loads((d / "metrics.json").read_text())
    m.pop("meta")
    return m


def _preds(d):
    rows = [json.loads(line) for line in open(d / "predictions.jsonl")]
    return sorted((r["id"], r["sample"], r["reply"]) for r in rows)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("evalref") / "run"
    r = run_cli(*EVAL, "eval.use_cache=false", f"output_dir={out}")
    assert r.returncode == 0, r.stderr[-3000:]
    return out / "eval", r.stdout


def test_eval_end_to_end(reference):
    d, stdout = reference
    questions = [json.loads(line) for line in open(d / "questions.jsonl")]
    preds = [json.loads(line) for line in open(d / "predictions.jsonl")]
    assert len(questions) == 12 and {q["task"] for q in questions} == {"position", "count"}
    assert len(preds) == 12 and {p["id"] for p in preds} == {q["id"] for q in questions}
    for p in preds:
        assert p["prompt_rendered"].startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
        assert p["prompt_rendered"].endswith("<|im_start|>assistant\n")
        assert {"reply", "parsed", "lenient", "spelled", "correct", "lenient_correct"} <= p.keys()
    m = json.loads((d / "metrics.json").read_text())
    for task in ("position", "count"):
        t = m["tasks"][task]
        assert t["replies"] == 6 and 0 <= t["accuracy"]["rate"] <= 1
        assert t["accuracy"]["ci95"][0] <= t["accuracy"]["rate"] <= t["accuracy"]["ci95"][1]
        assert {"no_answer", "spelled_out", "right_only_in_spelling", "by_word_length", "by_word_tokens"} <= t.keys()
    assert "mae" in m["tasks"]["count"] and "by_k" in m["tasks"]["position"]
    assert "| position | 6 |" in stdout and "accuracy (strict)" in stdout
    assert (d / "metrics.md").read_text().count("|") > 10


def _start_eval_and_wait_for_replies(out, n_replies: int = 4) -> subprocess.Popen:
    """An uncached evaluation into ``out``, returned once it has written ``n_replies`` replies."""
    proc = subprocess.Popen([sys.executable, "-m", "spelling_exp", *EVAL, "eval.use_cache=false",
                             f"output_dir={out}"], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    pred = out / "eval" / "predictions.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if pred.exists() and pred.read_text().count("\n") >= n_replies:
            break
        time.sleep(0.05)
    return proc


def test_resume_after_kill_gives_identical_metrics(reference, tmp_path):
    ref_dir, _ = reference
    out = tmp_path / "run"
    proc = _start_eval_and_wait_for_replies(out)
    pred = out / "eval" / "predictions.jsonl"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = pred.read_text().count("\n")
    assert 4 <= n_before < 12, "the run should have been killed mid-evaluation"
    r = run_cli(*EVAL, "eval.use_cache=false", f"output_dir={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming" in r.stdout + r.stderr
    assert _preds(out / "eval") == _preds(ref_dir)
    assert _metrics(out / "eval") == _metrics(ref_dir)


def test_sigterm_during_evaluation_is_one_line_and_resumes(reference, tmp_path):
    ref_dir, _ = reference
    out = tmp_path / "run"
    proc = _start_eval_and_wait_for_replies(out)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == "spelling_exp: interrupted by SIGTERM; rerun the same command to resume"
    assert "Traceback" not in stderr
    assert json.loads((out / "job_result.json").read_text())["status"] == "interrupted"
    r = run_cli(*EVAL, "eval.use_cache=false", f"output_dir={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert _preds(out / "eval") == _preds(ref_dir) and _metrics(out / "eval") == _metrics(ref_dir)


def test_damaged_predictions_are_dropped_and_redone(reference, tmp_path):
    """A garbage line and a row missing a field: the valid complete batches are kept, the damaged
    ones redone, with a warning; never a JSONDecodeError / KeyError."""
    ref_dir, _ = reference
    out = tmp_path / "run" / "eval"
    out.mkdir(parents=True)
    for f in ("questions.jsonl", "predictions.jsonl", "eval_state.json"):
        shutil.copy(ref_dir / f, out / f)
    lines = (out / "predictions.jsonl").read_text().splitlines(keepends=True)
    row = json.loads(lines[5])
    del row["reply"]
    lines[5] = json.dumps(row) + "\n"
    lines.insert(2, "garbage{\n")
    (out / "predictions.jsonl").write_text("".join(lines))
    r = run_cli(*EVAL, "eval.use_cache=false", f"output_dir={out.parent}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "dropped 2 damaged line(s)" in r.stdout + r.stderr
    assert _preds(out) == _preds(ref_dir) and _metrics(out) == _metrics(ref_dir)


def test_eval_cache_reused_across_runs(reference, tmp_path):
    a = run_cli(*EVAL, f"output_dir={tmp_path}/a")
    b = run_cli(*EVAL, f"output_dir={tmp_path}/b")
    assert a.returncode == 0 and b.returncode == 0, b.stderr[-2000:]
    assert "reused from cache" in b.stdout + b.stderr
    assert _metrics(tmp_path / "b" / "eval") == _metrics(tmp_path / "a" / "eval") == _metrics(reference[0])


@pytest.fixture(scope="module")
def random_adapter(tmp_path_factory, cache_dir):
    return make_random_adapter(tmp_path_factory.mktemp("adapter") / "lora", cache_dir)


def test_compare_two_evaluations(reference, random_adapter, tmp_path):
    r = run_cli(*EVAL, f"eval.adapter_path={random_adapter}", f"output_dir={tmp_path}/ad")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_cli("stage=compare", f"compare.base={reference[0]}", f"compare.adapter={tmp_path}/ad/eval",
                "compare.n_bootstrap=2000", f"output_dir={tmp_path}/cmp")
    assert r.returncode == 0, r.stderr[-2000:]
    c = json.loads((tmp_path / "cmp" / "compare" / "comparison.json").read_text())
    assert c["primary"] == ["position", "count"]
    for task in ("position", "count"):
        s = c["tasks"][task]["strict"]
        # one reply per question: scores are 0/1, so McNemar's exact test, Holm-adjusted
        assert s["n"] == 6 and s["test"] == "sign_flip" and 0 <= s["p"] <= s["p_holm"] <= 1
        assert s["analysis"] == "primary" and c["tasks"][task]["format"]["no_answer"]["analysis"] == "exploratory"
        assert s["ci95"][0] <= s["diff"] <= s["ci95"][1]
        assert s["diff"] == pytest.approx(s["adapter"] - s["base"])
        assert "verdict" in c["tasks"][task]
    # the overall scope pools tasks: clustered by word, so a sign-flip test, exploratory
    assert c["overall"]["strict"]["test"] == "sign_flip" and c["overall"]["strict"]["analysis"] == "exploratory"
    assert "Holm p" in r.stdout and "sign flip" in r.stdout


def test_compare_refuses_evaluations_that_differ_in_more_than_the_adapter(reference, tmp_path):
    greedy = tmp_path / "greedy"
    r = run_cli(*EVAL, "eval/sampling=greedy", f"output_dir={greedy}")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_cli("stage=compare", f"compare.base={reference[0]}", f"compare.adapter={greedy}/eval",
                f"output_dir={tmp_path}/cmp")
    assert r.returncode == 2 and "differ in more than the adapter" in r.stderr
    assert "generation.sampling.greedy: False vs True" in r.stderr
    assert not (tmp_path / "cmp" / "compare" / "comparison.json").exists()


def test_compare_refuses_different_questions(reference, tmp_path):
    other = tmp_path / "other"
    r = run_cli(*EVAL, "eval.seed=5", f"output_dir={other}")
    assert r.returncode == 0, r.stderr[-4000:]
    r = run_cli("stage=compare", f"compare.base={reference[0]}", f"compare.adapter={other}/eval",
                f"output_dir={tmp_path}/cmp")
    assert r.returncode == 2 and "questions_sha256" in r.stderr and "generation.seed: 0 vs 5" in r.stderr


def test_adapter_merged_and_unmerged_give_the_same_greedy_replies(random_adapter, cache_dir):
    """Evaluation keeps the adapter unmerged by default (a bf16 merge rounds small deltas away);
    in float32 a merge is exact enough that greedy replies are identical, and the adapter is not
    a no-op: it changes some replies of the base model."""
    from dataclasses import replace

    from spelling_exp.evaluation.backends import make_backend

    cfg = make_config("eval/sampling=greedy")
    e = replace(cfg.eval, max_new_tokens=16)
    prompts_of = make_backend(e, cfg.model, None, str(cache_dir))
    prompts = prompts_of.render([f"What is the {k} letter of the word '{w}'? Answer with the letter only."
                                 for k, w in (("1st", "pelican"), ("3rd", "garden"), ("2nd", "hovel"),
                                              ("4th", "strawberry"), ("last", "banana"), ("5th", "marble"))])
    base = prompts_of.generate(prompts, seed=0)
    unmerged = make_backend(e, cfg.model, str(random_adapter), str(cache_dir))
    merged = make_backend(replace(e, merge_adapter=True), cfg.model, str(random_adapter), str(cache_dir))
    a, b = unmerged.generate(prompts, seed=0), merged.generate(prompts, seed=0)
    from peft import PeftModel

    assert isinstance(unmerged._model, PeftModel) and not isinstance(merged._model, PeftModel)
    assert [[r.text for r in s] for s in a] == [[r.text for r in s] for s in b]
    assert [[r.text for r in s] for s in a] != [[r.text for r in s] for s in base]


def test_merge_refused_for_half_precision_weights(tmp_path):
    r = run_cli("stage=eval", "eval.merge_adapter=true", "model.dtype=bfloat16", f"output_dir={tmp_path}/x")
    assert r.returncode == 2 and "eval.merge_adapter" in r.stderr and "Traceback" not in r.stderr


def test_backend_owns_its_model_and_is_seeded_and_batched(cache_dir):
    from dataclasses import replace

    from spelling_exp.evaluation.backends import make_backend

    cfg = make_config()
    be = make_backend(replace(cfg.eval, max_new_tokens=12, n_samples=2), cfg.model, None, str(cache_dir))
    prompts = be.render([f"Say a word that starts with {c}." for c in "abc"])
    assert all(p.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM") for p in prompts)
    assert be._model is None  # rendering and counting tokens never load weights
    assert be.prompt_lengths(prompts) == [len(be.tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    a, b, c = be.generate(prompts, seed=1), be.generate(prompts, seed=1), be.generate(prompts, seed=2)
    assert a == b and a != c
    assert len(a) == 3 and all(len(s) == 2 for s in a)
    assert all("<|im_end|>" not in r.text for samples in a for r in samples)
    # 12 new tokens cannot hold a whole sentence about a word: some replies are cut off, and a
    # cut-off reply used (about: decoding and re-encoding may merge a token) all 12 tokens.
    assert any(r.truncated for samples in a for r in samples)
    assert all(len(be.tok(r.text, add_special_tokens=False)["input_ids"]) >= 10
               for samples in a for r in samples if r.truncated)


def test_thinking_refused_before_model_load(tmp_path):
    t0 = time.time()
    r = run_cli("stage=eval", "model=qwen3_4b", "model.enable_thinking=true", f"output_dir={tmp_path}/r")
    assert r.returncode == 2 and "non-thinking" in r.stderr
    assert time.time() - t0 < 10 and not (tmp_path / "r").exists()
