"""Unsloth vs PEFT on a CUDA GPU, offline: is the unsloth path as correct as PEFT, and is it faster?

  1. builds a Qwen3-4B-architecture model with random weights in bf16 (Qwen3Config with Qwen3-4B's
     dimensions: 36 layers, hidden 2560, intermediate 9728, 32 heads / 8 KV heads, head_dim 128,
     vocab 151,936, tied embeddings, RoPE theta 1e6) and saves it once, so both backends load the
     same weights from disk (no hub);
  2. trains LoRA r=16 on all linear projections on identical batches (the project's data build and
     bucketed order, checked by hash) with train.backend=peft and with train.backend=unsloth, each
     through the project's own training code (training/recipe.py::setup: model + LoRA, SFTConfig
     with padding-free off, LeanSFTTrainer, the padded-batch check), each in its own process
     (unsloth patches transformers globally, so the PEFT number must come from a process that
     never imported it): median step time, tokens/s, peak GPU memory, first-step loss;
  3. runs ``+experiment=smoke_qwen3 train.backend=unsloth`` end to end on CUDA (the train stage
     then runs in the fresh process that imports unsloth first) and checks the adapter was
     trained by unsloth;
  4. writes benchmarks/results/gpu_validate.json (GPU name, versions) and prints a table.

Checks (exit 1 when one fails): identical batches; first-step losses agree within 1% (LoRA B
starts at zero, so step 1 is the base model's loss on the same batch: a padding, mask or label
difference shows here); the smoke run finishes with backend unsloth.
Targets (reported; exit 1 only with --strict): unsloth >= 1.8x PEFT tokens/s and <= 0.5x its peak
GPU memory.

Needs CUDA and unsloth (bash scripts/setup.sh --cuda); anywhere else it says so in one line and
exits 2.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from _common import ROOT, print_table, write_results

sys.path.insert(0, str(ROOT))

# Qwen3-4B's config.json (hub Qwen/Qwen3-4B), the architecture fields.
QWEN3_4B = {"num_hidden_layers": 36, "hidden_size": 2560, "intermediate_size": 9728, "num_attention_heads": 32,
            "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936, "tie_word_embeddings": True,
            "rope_theta": 1_000_000.0, "max_position_embeddings": 40960, "rms_norm_eps": 1e-6, "hidden_act": "silu",
            "attention_bias": False, "bos_token_id": 151643, "eos_token_id": 151645}
TARGET_SPEEDUP = 1.8  # unsloth tokens/s over PEFT's, at least
TARGET_MEMORY = 0.5  # unsloth peak GPU memory over PEFT's, at most
LOSS_TOLERANCE = 0.01  # relative difference of the first-step losses, at most
BACKENDS = ("peft", "unsloth")
VERSIONED = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "unsloth", "unsloth_zoo", "xformers",
             "bitsandbytes", "triton")


def refuse_without_cuda() -> None:
    """One line on stderr and exit 2 where this cannot run."""
    import importlib.util

    import torch

    message = None
    if not torch.cuda.is_available():
        message = ("gpu_validate.py needs a CUDA GPU and finds none here; run it on a CUDA machine set up with "
                   "bash scripts/setup.sh --cuda")
    elif importlib.util.find_spec("unsloth") is None:
        message = "gpu_validate.py needs unsloth, which is not installed here; set up with bash scripts/setup.sh --cuda"
    if message:
        print(message, file=sys.stderr)
        raise SystemExit(2)


def versions() -> dict[str, str | None]:
    out = {}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def compose(work: Path, backend: str, a: argparse.Namespace):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from spelling_exp.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return OmegaConf.to_object(hydra_compose(config_name="config", overrides=[
            "model=qwen3_4b", f"model.path={work / 'model'}", "model.tokenizer_source=offline",
            "model.dtype=bfloat16", "model.device=cuda", f"data.examples.n_train={max(1000, a.steps * a.batch_size)}",
            "lora=all_linear", f"lora.r={a.rank}", f"lora.alpha={2 * a.rank}", f"lora.dropout={a.dropout}",
            f"train.backend={backend}", "train.precision=bf16", f"train.batch_size={a.batch_size}",
            "train.grad_accum=1", f"train.max_steps={a.steps}", "train.log_steps=1", "train.save_steps=1000000",
            f"train.max_length={a.max_length}", f"train.gradient_checkpointing={str(a.gradient_checkpointing).lower()}",
            "train.use_cache=false", f"paths.cache_dir={work / 'cache'}"]))


# ----------------------------------------------------------------------------------- workers
def worker_build(work: Path, a: argparse.Namespace) -> dict:
    """The random bf16 Qwen3-4B-architecture model (saved once) and the spelling data."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    from spelling_exp.data.build import prepare_data

    config = Qwen3Config(**QWEN3_4B)
    theta = (getattr(config, "rope_parameters", None) or {}).get("rope_theta", getattr(config, "rope_theta", None))
    if theta != QWEN3_4B["rope_theta"]:
        raise RuntimeError(f"Qwen3Config ignored rope_theta={QWEN3_4B['rope_theta']} (got {theta})")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    model.generation_config = GenerationConfig(bos_token_id=151643, eos_token_id=[151645, 151643],
                                               pad_token_id=151643)
    model.save_pretrained(str(work / "model"))
    params = sum(p.numel() for p in model.parameters())
    cfg = compose(work, "peft", a)
    # the tokenizer beside the weights (without it AutoTokenizer / vLLM get an empty one)
    from spelling_exp.model.tokenizer import build_offline_qwen3_tokenizer

    build_offline_qwen3_tokenizer(cfg.paths.cache_dir).save_pretrained(str(work / "model"))
    data = prepare_data(cfg.data, cfg.template, cfg.model, cfg.paths.cache_dir)
    return {"params": params, "data_dir": str(data.dir)}


def worker_train(work: Path, backend: str, a: argparse.Namespace) -> dict:
    """One backend through the project's training setup; unsloth imported before anything else."""
    if backend == "unsloth":
        from spelling_exp.training.model import import_unsloth_first

        import_unsloth_first()
    import torch
    from transformers import TrainerCallback

    from spelling_exp.training.job import TrainJob
    from spelling_exp.training.recipe import setup

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self._t = [], 0.0

        def on_step_begin(self, args, state, control, **kw):
            torch.cuda.synchronize()
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self._t)

    cfg = compose(work, backend, a)
    build = json.loads((work / "build.json").read_text())
    s = setup(TrainJob(cfg.model, cfg.lora, cfg.train, Path(build["data_dir"]), work / f"train_{backend}",
                       cfg.paths.cache_dir))
    rows = [list(r) for r in s.trainer.train_dataset["input_ids"]]
    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    lengths = [len(r) for r in rows]
    bs = cfg.train.batch_size
    tokens = [sum(lengths[i * bs:(i + 1) * bs]) for i in range(a.steps)]
    timer = StepTimer()
    s.trainer.add_callback(timer)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    s.trainer.train()
    losses = [h["loss"] for h in s.trainer.state.log_history if "loss" in h]
    w = a.warmup
    return {"backend": s.backend, "precision": s.precision, "trainable_params": s.trainable_params,
            "batches_sha256": digest, "tokens_per_step": tokens, "step_s": timer.times,
            "median_step_s": statistics.median(timer.times[w:]),
            "tokens_per_s": statistics.mean(tokens[w:]) / statistics.median(timer.times[w:]),
            "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
            "peak_gpu_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
            "first_step_loss": losses[0], "losses": losses,
            "padding_fraction": s.batching["padding_fraction"]}


def run_worker(name: str, work: Path, a: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, __file__, "--worker", name, "--work", str(work), *a.passthrough], cwd=ROOT,
                       env=worker_env(work))
    if r.returncode != 0:
        raise SystemExit(f"gpu_validate: the {name} worker failed (exit {r.returncode}); its output is above")
    out = json.loads((work / f"{name}.json").read_text())
    out["wall_s"] = time.perf_counter() - t0
    return out


def worker_env(work: Path) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "SPELLING_EXP_CACHE_DIR": str(work / "cache"),
            "PYTHONUNBUFFERED": "1"}


def smoke(work: Path) -> dict:
    """+experiment=smoke_qwen3 train.backend=unsloth, end to end through the CLI on CUDA."""
    run = work / "smoke_run"
    args = ["+experiment=smoke_qwen3", "train.backend=unsloth", "model.device=cuda", f"output_dir={run}"]
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "spelling_exp", *args], cwd=ROOT, env=worker_env(work),
                       capture_output=True, text=True)
    info_file = run / "train" / "adapter" / "train_info.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    ok = r.returncode == 0 and info.get("backend") == "unsloth"
    return {"command": "python -m spelling_exp " + " ".join(args[:3]), "exit_code": r.returncode, "ok": ok,
            "train_backend": info.get("backend"), "final_loss": info.get("final_loss"), "steps": info.get("steps"),
            "wall_s": time.perf_counter() - t0, "stderr_tail": r.stderr[-3000:] if not ok else ""}


# -------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=4, help="steps left out of the medians (compilation, autotuning)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--dropout", type=float, default=0.0, help="LoRA dropout (0: unsloth's fast path)")
    ap.add_argument("--max-length", type=int, default=160)
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--skip-smoke", action="store_true")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a speed or memory target is missed")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (the 8 GB model) instead of deleting it")
    ap.add_argument("--worker", choices=("build", *BACKENDS), help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.passthrough = [f"--steps={a.steps}", f"--warmup={a.warmup}", f"--batch-size={a.batch_size}", f"--rank={a.rank}",
                     f"--dropout={a.dropout}", f"--max-length={a.max_length}"] + \
        (["--gradient-checkpointing"] if a.gradient_checkpointing else [])
    if a.worker:
        work = Path(a.work)
        result = worker_build(work, a) if a.worker == "build" else worker_train(work, a.worker, a)
        (work / f"{a.worker}.json").write_text(json.dumps(result, indent=2))
        return
    refuse_without_cuda()
    import torch

    work = Path(tempfile.mkdtemp(prefix="gpu_validate_"))
    try:
        build = run_worker("build", work, a)
        runs = {b: run_worker(b, work, a) for b in BACKENDS}
        smoke_result = None if a.skip_smoke else smoke(work)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    peft, uns = runs["peft"], runs["unsloth"]
    speedup = uns["tokens_per_s"] / peft["tokens_per_s"]
    memory = uns["peak_gpu_memory_gib"] / peft["peak_gpu_memory_gib"]
    loss_diff = abs(uns["first_step_loss"] - peft["first_step_loss"]) / abs(peft["first_step_loss"])
    checks = {"identical_batches": peft["batches_sha256"] == uns["batches_sha256"],
              "first_step_loss_within_1pct": loss_diff <= LOSS_TOLERANCE,
              "backends_as_asked": peft["backend"] == "peft" and uns["backend"] == "unsloth",
              "smoke_qwen3_unsloth": None if smoke_result is None else smoke_result["ok"]}
    targets = {f"tokens_per_s >= {TARGET_SPEEDUP}x peft": speedup >= TARGET_SPEEDUP,
               f"peak_memory <= {TARGET_MEMORY}x peft": memory <= TARGET_MEMORY}
    rows = [{"backend": b, "median s/step": f"{r['median_step_s']:.3f}", "tokens/s": f"{r['tokens_per_s']:.0f}",
             "peak GPU GiB": f"{r['peak_gpu_memory_gib']:.2f}", "first-step loss": f"{r['first_step_loss']:.4f}",
             "trainable": f"{r['trainable_params'] / 1e6:.2f} M"} for b, r in runs.items()]
    print_table(rows, ["backend", "median s/step", "tokens/s", "peak GPU GiB", "first-step loss", "trainable"])
    gpu = torch.cuda.get_device_name(0)
    mean_tokens = statistics.mean(peft["tokens_per_step"])
    print(f"\n{gpu}; Qwen3-4B architecture, random bf16 weights ({build['params'] / 1e9:.2f} B params); LoRA "
          f"r={a.rank} all-linear, dropout {a.dropout}; batch {a.batch_size} x {mean_tokens / a.batch_size:.1f} "
          "tokens, "
          f"{a.steps} identical batches (padding {100 * peft['padding_fraction']:.1f}%), medians over steps "
          f"{a.warmup + 1}-{a.steps}; gradient checkpointing {'on' if a.gradient_checkpointing else 'off'}")
    print(f"unsloth / peft: tokens/s {speedup:.2f}x (target >= {TARGET_SPEEDUP}x), peak memory {memory:.2f}x "
          f"(target <= {TARGET_MEMORY}x), first-step loss differs by {100 * loss_diff:.3f}% (must be <= 1%)")
    if smoke_result is not None:
        print(f"{smoke_result['command']}: exit {smoke_result['exit_code']}, trained by "
              f"{smoke_result['train_backend']} in {smoke_result['wall_s']:.0f} s")
        if not smoke_result["ok"]:
            print(smoke_result["stderr_tail"], file=sys.stderr)
    for name, ok in {**checks, **targets}.items():
        print(f"  {'PASS' if ok else 'skipped' if ok is None else 'FAIL' if name in checks else 'MISS'}  {name}")
    write_results("gpu_validate", {
        "gpu": gpu, "cuda": torch.version.cuda, "versions": versions(),
        "model": {**QWEN3_4B, "params": build["params"]},
        "settings": {k: v for k, v in vars(a).items() if k not in ("worker", "work", "passthrough")},
        "runs": runs, "unsloth_over_peft": {"tokens_per_s": speedup, "peak_gpu_memory": memory},
        "first_step_loss_rel_diff": loss_diff, "checks": checks, "targets": targets, "smoke": smoke_result})
    failed = [k for k, v in checks.items() if v is False]
    failed += [k for k, v in targets.items() if not v] if a.strict else []
    if failed:
        raise SystemExit(f"gpu_validate: failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
