"""Shared test helpers: compose the real config, run the real CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"


def compose_config(*overrides: str, hydra_node: bool = False):
    """The composed DictConfig, in-process, exactly as the CLI would compose it."""
    from spelling_exp.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra_node)


def make_config(*overrides: str):
    """Compose the real config in-process and return the typed dataclass object."""
    return OmegaConf.to_object(compose_config(*overrides))


def run_cli(*args: str, cache: Path | None = None, timeout: int = 600, env: dict | None = None,
            cwd: Path = ROOT, python: str = sys.executable):
    """Run `python -m spelling_exp ...` for real and return the CompletedProcess."""
    e = dict(os.environ)
    if cache is not None:
        e["SPELLING_EXP_CACHE_DIR"] = str(cache)
    e.update(env or {})
    return subprocess.run([python, "-m", "spelling_exp", *args], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=timeout)


def make_random_adapter(out: Path, cache_dir: Path, scale: float = 0.05, seed: int = 0,
                        target_modules: tuple[str, ...] = ("q_proj", "v_proj")) -> Path:
    """A LoRA adapter for the embedded SmolLM2 with small random A and B (PEFT's default init
    has B = 0, a no-op), saved to ``out``: enough to change some greedy replies, not all."""
    import torch
    from peft import LoraConfig, get_peft_model

    from spelling_exp.model.loading import load_model

    model, _, _ = load_model(make_config().model, cache_dir, for_training=True)
    torch.manual_seed(seed)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=list(target_modules),
                                            init_lora_weights=False))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.mul_(scale)
    peft.save_pretrained(str(out))
    return out
