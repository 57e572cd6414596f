"""Prompt rendering shared by every backend: the model's own tokenizer and ``model.chat``, the one
place prompts are rendered, so a server backend sends byte-identical prompts to the ``hf`` one."""
from __future__ import annotations

from collections.abc import Sequence

from spelling_exp.config import ModelConfig
from spelling_exp.model.chat import build_messages, render_chat


class ChatPrompts:
    """Renders user turns with ``model``'s chat format and counts their tokens; never loads weights."""

    def __init__(self, model: ModelConfig, cache_dir: str | None):
        from spelling_exp.model.tokenizer import load_tokenizer

        self.model_cfg, self.cache_dir = model, cache_dir
        self.tok = load_tokenizer(model, cache_dir)  # cheap (cached)

    def render(self, user_prompts: Sequence[str]) -> list[str]:
        m = self.model_cfg
        return [render_chat(self.tok, build_messages(p, m.system_prompt), m.family, True, m.chat_template_kwargs)
                for p in user_prompts]

    def prompt_lengths(self, prompts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.token_ids(prompts)]

    def token_ids(self, prompts: Sequence[str]) -> list[list[int]]:
        """The ids the model sees: the rendered text already holds every special token."""
        return self.tok(list(prompts), add_special_tokens=False)["input_ids"]

    def end_of_turn(self) -> str:
        return str(self.tok.eos_token)
