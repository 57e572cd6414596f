"""LoRA training step time on the embedded SmolLM2 model, same batches, same LoRA init:

  (a) this project's trainer (TRL SFTTrainer + LeanSFTTrainer.compute_loss, bucketed order)
  (b) stock TRL 1.16 SFTTrainer (its fused-LM-head loss with entropy / token accuracy)
  (c) a bare PyTorch loop: model(**batch, labels) -> backward -> clip -> AdamW step

All three consume the batches of one TRL dataloader (same collation and padding). Reports the
median step time after warm-up, the ratio to the bare loop (target: (a) within 15%), and the
padding fraction of the batches (target < 5%). Unsloth vs PEFT needs a CUDA GPU: reported as
not measured when none is present.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from _common import ROOT, print_table, write_results

sys.path.insert(0, str(ROOT))


def make_cfg(batch_size: int, steps: int, r: int):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from spelling_exp.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return OmegaConf.to_object(compose(config_name="config", overrides=[
            "data.examples.n_train=4000", f"train.batch_size={batch_size}", f"train.max_steps={steps}",
            f"lora.r={r}", f"lora.alpha={2 * r}", "train.log_steps=1000", "train.save_steps=100000"]))


def step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self._t = [], None

        def on_step_begin(self, args, state, control, **kw):
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter() - self._t)

    return StepTimer()


def _model(cfg):
    from spelling_exp.training.model import load_trainable_model

    t = cfg.train
    return load_trainable_model(cfg.model, cfg.lora, "peft", cfg.paths.cache_dir, t.max_length, t.seed,
                                t.gradient_checkpointing)


def run_trainer(cfg, dataset, tok_factory, lean: bool, tmp: str):
    import torch
    from torch.utils.data import SequentialSampler
    from trl import SFTConfig, SFTTrainer

    from spelling_exp.training.trainer import make_trainer_class

    torch.manual_seed(0)
    model, tok = _model(cfg)
    args = SFTConfig(output_dir=tmp, per_device_train_batch_size=cfg.train.batch_size, max_steps=cfg.train.max_steps,
                     learning_rate=cfg.train.learning_rate, logging_steps=1000, save_strategy="no", use_cpu=True,
                     bf16=False, gradient_checkpointing=False, report_to="none", max_length=cfg.train.max_length,
                     completion_only_loss=True, disable_tqdm=True, seed=0)
    if lean:
        cls = make_trainer_class()
    else:
        class cls(SFTTrainer):  # stock TRL; only the sampler is made sequential, for identical batches
            def _get_train_sampler(self, *a, **k):
                return SequentialSampler(self.train_dataset)
    timer = step_timer()
    trainer = cls(model=model, args=args, train_dataset=dataset, processing_class=tok, callbacks=[timer])
    batches = list(trainer.get_train_dataloader())
    trainer.train()
    return timer.times, batches, trainer.state.log_history


def run_bare(cfg, batches):
    import torch

    torch.manual_seed(0)
    model, _ = _model(cfg)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.train.learning_rate)
    times = []
    for batch in batches:
        t0 = time.perf_counter()
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=14)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rank", type=int, default=16)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import tempfile

    import torch

    from spelling_exp.data.build import prepare_data
    from spelling_exp.model.tokenizer import load_tokenizer
    from spelling_exp.training.dataset import build_train_dataset

    cfg = make_cfg(args.batch_size, args.steps, args.rank)
    data = prepare_data(cfg.data, cfg.template, cfg.model, cfg.paths.cache_dir)
    tok = load_tokenizer(cfg.model, cfg.paths.cache_dir)
    dataset, info = build_train_dataset(data.dir / "examples_train.jsonl", tok, cfg.model, cfg.train)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        lean_t, batches, lean_hist = run_trainer(cfg, dataset, None, True, tmp)
        stock_t, batches2, stock_hist = run_trainer(cfg, dataset, None, False, tmp)
    same = all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(batches, batches2))
    bare_t = run_bare(cfg, batches)
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    padded = sum(b["attention_mask"].numel() for b in batches)
    w = args.warmup
    for name, ts in (("(a) spelling_exp trainer", lean_t), ("(b) stock TRL SFTTrainer", stock_t),
                     ("(c) bare PyTorch loop", bare_t)):
        results[name] = {"median_step_s": statistics.median(ts[w:]), "steps": ts}
    bare = results["(c) bare PyTorch loop"]["median_step_s"]
    rows = [{"variant": k, "median s/step": f"{v['median_step_s']:.3f}", "vs bare": f"{v['median_step_s'] / bare:.2f}x",
             "tokens/s": f"{real / len(batches) / v['median_step_s']:.0f}"} for k, v in results.items()]
    print_table(rows, ["variant", "median s/step", "vs bare", "tokens/s"])
    pad = 1 - real / padded
    mean_len = real / sum(b["input_ids"].shape[0] for b in batches)
    print(f"\nSmolLM2-135M, LoRA r={args.rank} all-linear, batch {args.batch_size}, {len(batches)} identical batches "
          f"(identical across trainers: {same}), mean {mean_len:.1f} tokens, padding {100 * pad:.2f}% "
          f"(target < 5%); medians over steps {w + 1}-{len(batches)}")
    ratio = results["(a) spelling_exp trainer"]["median_step_s"] / bare
    print(f"(a)/(c) = {ratio:.2f} (target <= 1.15); (b)/(c) = "
          f"{results['(b) stock TRL SFTTrainer']['median_step_s'] / bare:.2f}")
    unsloth = "not measured: no CUDA GPU on this machine" if not torch.cuda.is_available() else "see unsloth_vs_peft"
    print(f"Unsloth vs PEFT (Qwen3-4B architecture, random weights): {unsloth}")
    write_results("train_step", {"batch_size": args.batch_size, "lora_r": args.rank, "batches": len(batches),
                                 "identical_batches": same, "padding_fraction": pad, "mean_tokens": mean_len,
                                 "results": results, "ratio_lean_vs_bare": ratio, "unsloth_vs_peft": unsloth,
                                 "loss_first_last": {"lean": [h.get("loss") for h in lean_hist if "loss" in h][:1],
                                                     "stock": [h.get("loss") for h in stock_hist if "loss" in h][:1]}})


if __name__ == "__main__":
    main()
