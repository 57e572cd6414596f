"""Chat formatting, with Qwen3 thinking mode forbidden.

Every prompt in this project (training and evaluation) is rendered here, so the two can
never drift apart. For the Qwen3 family we always pass ``enable_thinking=False`` and check
the rendered text: a generation prompt must end with the empty think block, and a
training conversation must contain it right before the assistant answer.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from spelling_exp.errors import ThinkingModeError

EMPTY_THINK_BLOCK = "<think>\n\n</think>\n\n"
QWEN3_GENERATION_SUFFIX = "<|im_start|>assistant\n" + EMPTY_THINK_BLOCK

# Qwen3's chat template (ChatML), written for this project: system / user / assistant turns,
# no tools. Like the official one, the final assistant turn always carries a think block
# (empty when there is no reasoning), and in non-thinking mode the generation prompt ends
# with the empty think block, so training and evaluation see the same prefix.
QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- set content = message['content'] %}"
    "{%- if '</think>' in content %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}"
    "{%- endif %}"
    "{%- if loop.last %}"
    "{{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' + content + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>assistant\\n' + content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)


def is_qwen3(family: str) -> bool:
    return family.lower().startswith("qwen3")


def check_thinking_disabled(family: str, enable_thinking: bool, template_kwargs: Mapping[str, Any]) -> None:
    """Raise before anything is loaded if a config would turn thinking on."""
    if enable_thinking:
        raise ThinkingModeError(
            "model.enable_thinking=true is not allowed: this project always runs Qwen3 in non-thinking mode"
        )
    if template_kwargs.get("enable_thinking", False):
        raise ThinkingModeError(
            "model.chat_template_kwargs.enable_thinking=true is not allowed: "
            "this project always runs Qwen3 in non-thinking mode"
        )
    del family  # the rule is global; family only changes how we render


def build_messages(user: str, system_prompt: str | None, assistant: str | None = None) -> list[dict[str, str]]:
    msgs: list[dict[str, str]] = []
    if system_prompt is not None:
        msgs.append({"role": "system", "content": system_prompt})
    msgs.append({"role": "user", "content": user})
    if assistant is not None:
        msgs.append({"role": "assistant", "content": assistant})
    return msgs


def render_chat(
    tokenizer: Any,
    messages: Sequence[Mapping[str, str]],
    family: str,
    add_generation_prompt: bool,
    template_kwargs: Mapping[str, Any] | None = None,
) -> str:
    """Render messages to text through the tokenizer's chat template, thinking forced off."""
    kwargs = dict(template_kwargs or {})
    check_thinking_disabled(family, False, kwargs)
    if is_qwen3(family):
        kwargs["enable_thinking"] = False
    text = tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
    )
    if is_qwen3(family):
        if add_generation_prompt and not text.endswith(QWEN3_GENERATION_SUFFIX):
            raise ThinkingModeError(
                "Qwen3 prompt does not end with the empty think block; the chat template would allow thinking"
            )
        if not add_generation_prompt and messages and messages[-1]["role"] == "assistant":
            if "<|im_start|>assistant\n" + EMPTY_THINK_BLOCK not in text:
                raise ThinkingModeError("Qwen3 training text lacks the empty think block before the answer")
    return text


def split_prompt_completion(
    tokenizer: Any, messages: Sequence[Mapping[str, str]], family: str,
    template_kwargs: Mapping[str, Any] | None = None,
) -> tuple[str, str]:
    """(prompt, completion) for SFT: prompt is exactly the evaluation-time generation prompt."""
    assert messages[-1]["role"] == "assistant"
    prompt = render_chat(tokenizer, messages[:-1], family, True, template_kwargs)
    full = render_chat(tokenizer, messages, family, False, template_kwargs)
    if not full.startswith(prompt):
        raise ThinkingModeError("training and evaluation prompt formats differ for this chat template")
    return prompt, full[len(prompt):]
