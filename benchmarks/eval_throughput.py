"""Questions/s on the embedded SmolLM2 model, same questions and prompts, greedy:

  (a) one question at a time        (HF generate, batch 1)
  (b) this project's batched backend (length-sorted batches, left padding, stop at EOS)
  (c) lm-evaluation-harness HF backend (lm-eval from PyPI; a generate_until task built from
      the same questions, chat template + the same system prompt), at its default batch
      size (1) and at the same batch size as (b)
  (d) the llamacpp backend: a local llama.cpp server (xllamacpp) on the same GGUF, through the
      evaluation recipe's loop (its batch plan, eval.llamacpp.parallel slots, the next batches
      queued while one is collected), the way `eval.backend=llamacpp` runs
  (e) the same server, every prompt submitted at once (no batch rounds), at several slot
      counts, with and without prompt caching: where the server's own limit is

All replies are scored with this project's parser, so the accuracies are comparable; they must
agree within noise (the prompts are identical and decoding is greedy; llama.cpp runs the Q4_1
weights, the others the dequantized fp32 ones, so its replies differ now and then).
Targets: (b) >= 3x (c); (d) >= 1.5x (b). Needs `pip install lm-eval` (the `bench` extra) for (c).
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
            "+experiment=quickstart", f"eval.n_questions={n_questions}", f"eval.max_new_tokens={max_new_tokens}",
            f"eval.batch_size={batch_size}", "eval/sampling=greedy"]))
    data = prepare_data(cfg.data, cfg.template, cfg.model, cfg.paths.cache_dir)
    return cfg, build_questions(list(iter_jsonl(data.dir / "holdout_test.jsonl")), cfg.eval)


def accuracy(questions, replies) -> dict:
    from spelling_exp.evaluation.recipe import score

    scored = [score(q, r) for q, r in zip(questions, replies)]
    return {"accuracy": sum(s["correct"] for s in scored) / len(scored),
            "no_answer": sum(s["parsed"] is None for s in scored) / len(scored)}


def run_project(backend, prompts, batch_size) -> list[str]:
    """The evaluation recipe's own loop: its batch plan, a seed per batch, and (for a server
    backend) the next batches queued while one is collected."""
    from spelling_exp.evaluation.recipe import _replies_in_order, plan_batches

    replies = [""] * len(prompts)
    batches = plan_batches(backend.prompt_lengths(prompts), batch_size)
    for b, out in _replies_in_order(backend, prompts, batches, list(range(len(batches))), 0):
        for i, samples in zip(batches[b], out):
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


def run_server_all_at_once(prompts, max_new_tokens: int, gguf: str, slots: int, threads: int,
                           cache_prompt: bool = True, ubatch: int = 512) -> tuple[list[str], dict]:
    """Every prompt in flight at once (``slots`` decoded together); returns replies and token counts."""
    from concurrent.futures import ThreadPoolExecutor

    import openai

    from spelling_exp.evaluation.backends.llamacpp_server import ALIAS, LlamaCppServer

    settings = {"gguf": gguf, "parallel": slots, "ctx_per_slot": 512, "batch": 2048, "ubatch": ubatch,
                "threads": threads, "api_key": "bench"}
    with LlamaCppServer(settings, Path(tempfile.mkdtemp(prefix="llamacpp-")) / "server.log") as srv:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="bench", max_retries=0, timeout=600)
        client.completions.create(model=ALIAS, prompt=prompts[0], max_tokens=1)  # warm up outside the timing

        def one(p):
            return client.completions.create(model=ALIAS, prompt=p, max_tokens=max_new_tokens, temperature=0.0,
                                             extra_body={"cache_prompt": cache_prompt})

        t0 = time.perf_counter()
        with ThreadPoolExecutor(slots) as pool:
            rs = list(pool.map(one, prompts))
        dt = time.perf_counter() - t0
    tokens = {"prompt": sum(r.usage.prompt_tokens for r in rs), "generated": sum(r.usage.completion_tokens for r in rs),
              "cached": sum(getattr(r.usage.prompt_tokens_details, "cached_tokens", 0) or 0 for r in rs),
              "seconds": dt}
    return [r.choices[0].text for r in rs], tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-questions", type=int, default=24, help="per task (position, count)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--skip-lm-eval-bs1", action="store_true")
    ap.add_argument("--skip-one-at-a-time", action="store_true", help="skip (a) (slow: ~0.5 q/s)")
    ap.add_argument("--skip-lm-eval", action="store_true", help="skip (c) (lm-eval not installed)")
    ap.add_argument("--slots", default="4,8,16,32", help="(e): llama.cpp slot counts to try")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
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

    if not args.skip_one_at_a_time:
        timed("(a) one at a time", lambda: run_project(backend, prompts, 1))
    timed(f"(b) spelling_exp batched (bs {args.batch_size})", lambda: run_project(backend, prompts, args.batch_size))
    lm_prompts = {}
    for bs in [] if args.skip_lm_eval else ([] if args.skip_lm_eval_bs1 else [1]) + [args.batch_size]:
        name = f"(c) lm-eval HF (bs {bs}{', its default' if bs == 1 else ''})"
        timed(name, lambda bs=bs: (lambda r: (lm_prompts.setdefault(bs, r[1]), r[0])[1])(
            run_lm_eval(model, tok, questions, cfg, bs)))
    # (d) the llamacpp backend as the evaluation runs it (server start-up outside the timing)
    from dataclasses import replace

    from spelling_exp.evaluation.backends.llamacpp import model_gguf

    llama = replace(cfg.eval, backend="llamacpp", llamacpp=replace(cfg.eval.llamacpp, threads=args.threads))
    lb = make_backend(llama, cfg.model, None, cfg.paths.cache_dir, work_dir=Path(tempfile.mkdtemp(prefix="llama-")))
    t_start = time.perf_counter()
    lb.generate(prompts[:1], seed=0)
    server_start = time.perf_counter() - t_start
    s = llama.llamacpp
    timed(f"(d) llamacpp backend (bs {args.batch_size}, {s.parallel} slots)",
          lambda: run_project(lb, prompts, args.batch_size))
    lb.close()
    gguf, tokens = str(model_gguf(cfg.model, s)), {}
    for slots in [int(x) for x in args.slots.split(",")]:
        for cache_prompt in (True, False) if slots == s.parallel else (True,):
            name = f"(e) llama.cpp server, all at once, {slots} slots" + ("" if cache_prompt else ", no prompt cache")

            def go(slots=slots, cache_prompt=cache_prompt, name=name):
                out, tokens[name] = run_server_all_at_once(prompts, args.max_new_tokens, gguf, slots, args.threads,
                                                           cache_prompt)
                return out
            timed(name, go)
    for name, t in tokens.items():
        results[name]["tokens"] = t
        print(f"{name}: {t['generated'] / t['seconds']:.0f} generated tok/s, {t['prompt'] / t['seconds']:.0f} prompt "
              f"tok/s, {t['cached']}/{t['prompt']} prompt tokens from the cache")
    print(f"llama.cpp server start-up (model load, first request): {server_start:.1f} s")
    same_prompts = all(p == prompts for p in lm_prompts.values())
    from spelling_exp.evaluation.recipe import score

    ref_name = f"(b) spelling_exp batched (bs {args.batch_size})"
    base = results[ref_name]["questions_per_s"]
    agree = {k: sum(x == y for x, y in zip(replies[k], replies[ref_name])) for k in replies}
    same_answer = {k: sum(score(q, x)["parsed"] == score(q, y)["parsed"]
                          for q, x, y in zip(questions, replies[k], replies[ref_name])) for k in replies}
    rows = [{"backend": k, "q/s": f"{v['questions_per_s']:.2f}", "seconds": f"{v['seconds']:.1f}",
             "accuracy": f"{100 * v['accuracy']:.1f}%", "no answer": f"{100 * v['no_answer']:.1f}%",
             "vs (b)": f"{v['questions_per_s'] / base:.2f}x", "same reply as (b)": f"{100 * agree[k] / n:.0f}%",
             "same answer as (b)": f"{100 * same_answer[k] / n:.0f}%"}
            for k, v in results.items()]
    print()
    print_table(rows, ["backend", "q/s", "seconds", "accuracy", "no answer", "vs (b)", "same reply as (b)",
                       "same answer as (b)"])
    print(f"\n{n} questions, greedy, max_new_tokens={args.max_new_tokens}; lm-eval rendered identical prompts: "
          f"{same_prompts}; replies identical to (b): " + ", ".join(f"{k.split(')')[0]})={v}/{n}"
                                                                  for k, v in agree.items()))
    write_results("eval_throughput", {"n_questions": n, "max_new_tokens": args.max_new_tokens,
                                      "batch_size": args.batch_size, "results": results,
                                      "identical_prompts": same_prompts, "identical_replies": agree,
                                      "same_parsed_answer": same_answer, "llamacpp_server_start_s": server_start,
                                      "threads": args.threads})


if __name__ == "__main__":
    main()
