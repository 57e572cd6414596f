"""transformers ``generate`` backend: left padding, batched, seeded, stops at EOS."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spelling_exp.config import EvalConfig, ModelConfig, SamplingConfig
from spelling_exp.evaluation.backends import Reply
from spelling_exp.evaluation.backends.prompts import ChatPrompts

SETTINGS = ("merge_adapter",)
NOT_IN_IDENTITY: dict[str, str] = {}


def identity(eval_cfg: EvalConfig) -> dict[str, Any]:
    # eval.merge_adapter is keyed by the recipe beside the adapter (generation.merge_adapter, for
    # every backend, as before backends had identities); repeating it here would change every hf key.
    return {}


def check(eval_cfg: EvalConfig, model: ModelConfig, evaluates_adapter: bool) -> None:
    """Nothing of its own: the weights' checks (merge_adapter with bf16 weights) are the CLI's."""


def build(eval_cfg: EvalConfig, model: ModelConfig, adapter: str | None, cache_dir: str,
          work_dir: Path | None = None) -> HFBackend:
    e = eval_cfg
    return HFBackend(model, e.sampling, e.max_new_tokens, e.n_samples, adapter=adapter, cache_dir=cache_dir,
                     merge_adapter=e.merge_adapter)


class HFBackend(ChatPrompts):
    name = "hf"

    def __init__(self, model: ModelConfig, sampling: SamplingConfig, max_new_tokens: int, n_samples: int = 1,
                 adapter: str | None = None, cache_dir: str | None = None, merge_adapter: bool = False):
        super().__init__(model, cache_dir)  # the tokenizer; the weights wait for generate()
        self.adapter, self.merge_adapter = adapter, merge_adapter
        self.max_new_tokens, self.n_samples = max_new_tokens, n_samples
        if sampling.greedy:
            self.gen_kwargs: dict[str, Any] = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        else:
            self.gen_kwargs = {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p,
                               "top_k": sampling.top_k, "min_p": sampling.min_p or None}
        self._model: Any = None
        self.device: str | None = None

    def _load(self) -> Any:
        from spelling_exp.model.loading import load_model

        model, self.tok, self.device = load_model(self.model_cfg, self.cache_dir, adapter_path=self.adapter,
                                                  merge_adapter=self.merge_adapter)
        self.tok.padding_side = "left"
        eos = {self.tok.eos_token_id} | set(_as_list(model.generation_config.eos_token_id))
        self.gen_kwargs["eos_token_id"] = sorted(i for i in eos if i is not None)
        self.gen_kwargs["pad_token_id"] = self.tok.pad_token_id
        return model

    def generate(self, prompts: Sequence[str], seed: int) -> list[list[Reply]]:
        import torch

        if self._model is None:
            self._model = self._load()
        enc = self.tok(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self._model.generate(**enc, max_new_tokens=self.max_new_tokens,
                                       num_return_sequences=self.n_samples, **self.gen_kwargs)
        new = out[:, enc["input_ids"].shape[1]:]
        texts = self.tok.batch_decode(new, skip_special_tokens=True)
        # A reply ended properly when an end-of-turn token appears among its new tokens; padding
        # after it is pad_token_id. Without one it ran into max_new_tokens and was cut off.
        eos = torch.tensor(self.gen_kwargs["eos_token_id"], device=new.device)
        finished = torch.isin(new, eos).any(dim=1).tolist()
        replies = [Reply(t, not f) for t, f in zip(texts, finished)]
        n = self.n_samples
        return [replies[i * n:(i + 1) * n] for i in range(len(prompts))]

    def choice_logprobs(self, prompts: Sequence[str], options: Sequence[str], batch_size: int = 8) -> list[list[float]]:
        """For each prompt, log P(option + end of turn | prompt) of each option: the option as the
        whole reply (forced-choice scoring, evaluation/forced_choice.py). Per batch of prompts: one
        forward pass over the left-padded prompts, then every option of every prompt in one batch on
        the prompts' cached keys and values (positions counted from each prompt's first real token)."""
        import torch

        if self._model is None:
            self._model = self._load()
        end = self.tok.eos_token_id if self.tok.eos_token_id is not None else self.gen_kwargs["eos_token_id"][0]
        cache_name = self._cache_kwarg()  # once per call, not per batch
        conts = [self.tok(o, add_special_tokens=False)["input_ids"] + [end] for o in options]
        # the last token (end of turn) is only predicted, never fed: a one-token option costs one position
        k, width = len(conts), max(len(c) for c in conts) - 1
        cont_ids = torch.tensor([c[:-1] + [end] * (width - len(c) + 1) for c in conts], device=self.device)
        cont_mask = torch.tensor([[1] * (len(c) - 1) + [0] * (width - len(c) + 1) for c in conts],
                                 device=self.device)
        out: list[list[float]] = []
        for start in range(0, len(prompts), batch_size):
            enc = self.tok(list(prompts[start:start + batch_size]), return_tensors="pt", padding=True,
                           add_special_tokens=False).to(self.device)
            b, mask = enc["input_ids"].shape[0], enc["attention_mask"]
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                pre = self._model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=pos, use_cache=True)
                first = torch.log_softmax(pre.logits[:, -1].float(), dim=-1)  # left padding: the last is real
                cache = getattr(pre, cache_name)
                cache.batch_repeat_interleave(k)
                full_mask = torch.cat([mask.repeat_interleave(k, dim=0), cont_mask.repeat(b, 1)], dim=1)
                cont_pos = pos[:, -1:].repeat_interleave(k, dim=0) + 1 + torch.arange(width, device=self.device)
                logits = self._model(input_ids=cont_ids.repeat(b, 1), attention_mask=full_mask,
                                     position_ids=cont_pos, **{cache_name: cache}).logits
                logp = torch.log_softmax(logits.float(), dim=-1).view(b, k, width, -1)
            for row in range(b):
                out.append([first[row, c[0]].item() + sum(logp[row, i, j - 1, c[j]].item() for j in range(1, len(c)))
                            for i, c in enumerate(conts)])
        return out

    def _cache_kwarg(self) -> str:
        """transformers 5 renamed forward()'s past_key_values to cache; older versions know only the first."""
        import inspect

        base = self._model.get_base_model() if hasattr(self._model, "get_base_model") else self._model
        return "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"

    def close(self) -> None:
        """Give the weights' memory back before the next stage (a training in a fresh process, for
        Unsloth, would otherwise share the GPU with the evaluation's model)."""
        if self._model is None:
            return
        import gc

        import torch

        self._model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _as_list(x: Any) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]
