"""Questions/s on the embedded SmolLM2 model, same questions and prompts, greedy:

  (a) one question at a time        (HF generate, batch 1)
  (b) this project's batched backend (length-sorted batches, left padding, stop at EOS)
  (c) lm-evaluation-harness HF backend (lm-eval from PyPI; a generate_until task built from
      the same questions, chat template + the same system prompt), at its default batch
      size (1) and at the same batch size as (b)

All replies are scored with this project's parser, so the accuracies are comparable; they must
agree within noise (the prompts are identical and decoding is greedy). Target: (b) >= 3x (c).
Needs `pip install lm-eval` (the `bench` extra).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, print_table, write_results

sys.path.insert(0, str(ROOT))


def build(n_questions: int, max_new_tokens: int, batch_size: int):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from spelling_exp.config import register_configs
    from spelling_exp.data.build import prepare_data
    from spelling_exp.evaluation.questions import build_questions
    from spelling_exp.storage.io import iter_jsonl

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = OmegaConf.to_object(compose(config_name="config", overrides=[
            "data=small", f"eval.n_questions={n_questions}", f"eval.max_new_tokens={max_new_tokens}",
            f"eval.batch_size={batch_size}", "eval/sampling=greedy"]))
    data = prepare_data(cfg.data, cfg.template, cfg.model, cfg.paths.cache_dir)
    return cfg, build_questions(list(iter_jsonl(data.dir / "holdout_test.jsonl")), cfg.eval)


def accuracy(questions, replies) -> dict:
    from spelling_exp.evaluation.recipe import score

    scored = [score(q, r) for q, r in zip(questions, replies)]
    return {"accuracy": sum(s["correct"] for s in scored) / len(scored),
            "no_answer": sum(s["parsed"] is None for s in scored) / len(scored)}


def run_project(backend, prompts, batch_size) -> list[str]:
    from spelling_exp.evaluation.recipe import plan_batches

    replies = [""] * len(prompts)
    for b, idx in enumerate(plan_batches(backend.prompt_lengths(prompts), batch_size)):
        for i, samples in zip(idx, backend.generate([prompts[i] for i in idx], seed=b)):
            replies[i] = samples[0].text
    return replies


def run_lm_eval(model, tok, questions, cfg, batch_size: int) -> tuple[list[str], list[str]]:
    import yaml
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    tmp = Path(tempfile.mkdtemp(prefix="lmeval-"))
    (tmp / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    task = {"task": "spelling_exp_questions", "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(tmp / "questions.jsonl")}}, "test_split": "test",
            "output_type": "generate_until", "doc_to_text": "{{prompt}}", "doc_to_target": "{{answer}}",
            "target_delimiter": "", "generation_kwargs": {"until": [tok.eos_token], "do_sample": False,
                                                          "max_gen_toks": cfg.eval.max_new_tokens},
            "metric_list": [{"metric": "exact_match"}]}
    (tmp / "task.yaml").write_text(yaml.safe_dump(task))
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, device="cpu")
    res = simple_evaluate(model=lm, tasks=["spelling_exp_questions"], task_manager=TaskManager(include_path=str(tmp)),
                          apply_chat_template=True, system_instruction=cfg.model.system_prompt, log_samples=True,
                          num_fewshot=0, verbosity="ERROR")
    samples = sorted(res["samples"]["spelling_exp_questions"], key=lambda s: s["doc_id"])
    return [s["resps"][0][0] for s in samples], [s["arguments"][0][0] for s in samples]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-questions", type=int, default=24, help="per task (position, count)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--skip-lm-eval-bs1", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from spelling_exp.evaluation.backends import make_backend

    cfg, questions = build(args.n_questions, args.max_new_tokens, args.batch_size)
    backend = make_backend(cfg.eval, cfg.model, None, cfg.paths.cache_dir)
    prompts = backend.render([q["prompt"] for q in questions])
    backend.generate(prompts[:1], seed=0)  # load the weights outside the timings
    model, tok = backend._model, backend.tok
    n = len(questions)
    results, replies = {}, {}

    def timed(name, fn):
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        replies[name] = out
        results[name] = {"seconds": dt, "questions_per_s": n / dt, **accuracy(questions, out)}
        print(f"{name}: {n / dt:.2f} q/s", flush=True)

    timed("(a) one at a time", lambda: run_project(backend, prompts, 1))
    timed(f"(b) spelling_exp batched (bs {args.batch_size})", lambda: run_project(backend, prompts, args.batch_size))
    lm_prompts = {}
    for bs in ([] if args.skip_lm_eval_bs1 else [1]) + [args.batch_size]:
        name = f"(c) lm-eval HF (bs {bs}{', its default' if bs == 1 else ''})"
        timed(name, lambda bs=bs: (lambda r: (lm_prompts.setdefault(bs, r[1]), r[0])[1])(
            run_lm_eval(model, tok, questions, cfg, bs)))
    same_prompts = all(p == prompts for p in lm_prompts.values())
    base = results[f"(b) spelling_exp batched (bs {args.batch_size})"]["questions_per_s"]
    rows = [{"backend": k, "q/s": f"{v['questions_per_s']:.2f}", "seconds": f"{v['seconds']:.1f}",
             "accuracy": f"{100 * v['accuracy']:.1f}%", "no answer": f"{100 * v['no_answer']:.1f}%",
             "(b) speedup": f"{base / v['questions_per_s']:.2f}x"} for k, v in results.items()]
    print()
    print_table(rows, ["backend", "q/s", "seconds", "accuracy", "no answer", "(b) speedup"])
    agree = {k: sum(x == y for x, y in zip(replies[k], replies[f"(b) spelling_exp batched (bs {args.batch_size})"]))
             for k in replies}
    print(f"\n{n} questions, greedy, max_new_tokens={args.max_new_tokens}; lm-eval rendered identical prompts: "
          f"{same_prompts}; replies identical to (b): " + ", ".join(f"{k.split(')')[0]})={v}/{n}"
                                                                  for k, v in agree.items()))
    write_results("eval_throughput", {"n_questions": n, "max_new_tokens": args.max_new_tokens,
                                      "batch_size": args.batch_size, "results": results,
                                      "identical_prompts": same_prompts, "identical_replies": agree})


if __name__ == "__main__":
    main()
