"""transformers ``generate`` backend: left padding, batched, seeded, stops at EOS."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class HFBackend:
    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, device: str, sampling: Any, max_new_tokens: int,
                 n_samples: int = 1):
        self.model, self.tok, self.device = model, tokenizer, device
        self.tok.padding_side = "left"
        self.max_new_tokens = max_new_tokens
        self.n_samples = n_samples
        if sampling.greedy:
            if n_samples > 1:
                from ..errors import ConfigError

                raise ConfigError("greedy decoding gives identical samples; use eval.n_samples=1 with greedy")
            self.gen_kwargs = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        else:
            self.gen_kwargs = {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p,
                               "top_k": sampling.top_k, "min_p": sampling.min_p or None}
        eos = {tokenizer.eos_token_id} | set(_as_list(model.generation_config.eos_token_id))
        self.gen_kwargs["eos_token_id"] = sorted(i for i in eos if i is not None)
        self.gen_kwargs["pad_token_id"] = tokenizer.pad_token_id

    def prompt_lengths(self, prompts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.tok(list(prompts), add_special_tokens=False)["input_ids"]]

    def generate(self, prompts: Sequence[str], seed: int) -> list[list[str]]:
        import torch

        enc = self.tok(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(**enc, max_new_tokens=self.max_new_tokens,
                                      num_return_sequences=self.n_samples, **self.gen_kwargs)
        texts = self.tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        n = self.n_samples
        return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]


def _as_list(x: Any) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]
