import random

import pytest

from spelling_exp.errors import ThinkingModeError
from spelling_exp.model.chat import (
    EMPTY_THINK_BLOCK,
    QWEN3_GENERATION_SUFFIX,
    build_messages,
    check_thinking_disabled,
    render_chat,
    split_prompt_completion,
)
from spelling_exp.model.tokenizer import QWEN2_PATTERN, hub_reachable


def test_offline_qwen3_ids_pinned(qwen_tokenizer):
    tok = qwen_tokenizer
    assert tok("Hello, world!", add_special_tokens=False)["input_ids"] == [9707, 11, 1879, 0]
    assert tok.convert_tokens_to_ids("<|im_start|>") == 151644
    assert tok.convert_tokens_to_ids("<|im_end|>") == 151645
    assert tok.convert_tokens_to_ids("<think>") == 151667
    assert tok.convert_tokens_to_ids("</think>") == 151668
    assert len(tok) == 151669
    assert tok(" strawberry", add_special_tokens=False)["input_ids"] == [72600]
    assert tok.tokenize("strawberry") == ["str", "aw", "berry"]
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"


def test_offline_qwen3_matches_tiktoken(qwen_tokenizer):
    import tiktoken
    from english_words import get_english_words_set
    from tiktoken.load import load_tiktoken_bpe

    from spelling_exp.model.resources import qwen_tiktoken_file

    enc = tiktoken.Encoding("qwen", pat_str=QWEN2_PATTERN,
                            mergeable_ranks=load_tiktoken_bpe(str(qwen_tiktoken_file())), special_tokens={})
    words = random.Random(0).sample(sorted(get_english_words_set(["web2"])), 500)
    texts = words + [" " + w for w in words] + ["Numbers 12345, spaces   and\n\nnewlines; it's Ünïcödé 漢字 ok"]
    for t in texts:
        ids = qwen_tokenizer(t, add_special_tokens=False)["input_ids"]
        assert ids == enc.encode(t), t
        assert qwen_tokenizer.decode(ids) == t


@pytest.mark.skipif(not hub_reachable(), reason="huggingface.co unreachable (offline machine)")
def test_hub_qwen3_tokenizer_gives_same_ids(qwen_tokenizer):
    from transformers import AutoTokenizer

    hub = AutoTokenizer.from_pretrained("Qwen/Qwen3-4B")
    for t in ["Hello, world!", "How many r's are in strawberry?", "<|im_start|>user\nhi<|im_end|>"]:
        assert hub(t)["input_ids"] == qwen_tokenizer(t)["input_ids"]
    msgs = [{"role": "user", "content": "What is the 3rd letter of 'pelican'?"}]
    kw = dict(tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert hub.apply_chat_template(msgs, **kw) == qwen_tokenizer.apply_chat_template(msgs, **kw)


def test_qwen3_generation_prompt_ends_with_empty_think_block(qwen_tokenizer):
    text = render_chat(qwen_tokenizer, build_messages("What is the 3rd letter of 'pelican'?", None), "qwen3", True)
    assert text.endswith(QWEN3_GENERATION_SUFFIX)
    assert text == ("<|im_start|>user\nWhat is the 3rd letter of 'pelican'?<|im_end|>\n"
                    "<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_qwen3_training_format_equals_eval_prompt_plus_answer(qwen_tokenizer):
    msgs = build_messages("Spell pelican.", "sys", "pelican: p-e-l-i-c-a-n")
    prompt, completion = split_prompt_completion(qwen_tokenizer, msgs, "qwen3")
    assert prompt == render_chat(qwen_tokenizer, msgs[:-1], "qwen3", True)
    assert prompt.endswith(EMPTY_THINK_BLOCK)
    assert completion == "pelican: p-e-l-i-c-a-n<|im_end|>\n"


def test_thinking_mode_is_refused():
    with pytest.raises(ThinkingModeError, match="non-thinking"):
        check_thinking_disabled("qwen3", True, {})
    with pytest.raises(ThinkingModeError, match="non-thinking"):
        check_thinking_disabled("qwen3", False, {"enable_thinking": True})
    check_thinking_disabled("qwen3", False, {"enable_thinking": False})


def test_render_refuses_thinking_kwargs(qwen_tokenizer):
    with pytest.raises(ThinkingModeError):
        render_chat(qwen_tokenizer, build_messages("hi", None), "qwen3", True, {"enable_thinking": True})


def test_render_detects_a_template_that_would_think(qwen_tokenizer):
    # A chat template that ignores enable_thinking (e.g. a user-supplied one) must be caught.
    tok = qwen_tokenizer
    saved = tok.chat_template
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    try:
        with pytest.raises(ThinkingModeError, match="empty think block"):
            render_chat(tok, build_messages("hi", None), "qwen3", True)
    finally:
        tok.chat_template = saved


def test_smollm2_tokenizer_from_gguf(smol_tokenizer):
    assert len(smol_tokenizer) == 49152
    assert smol_tokenizer.eos_token == "<|im_end|>"
    text = render_chat(smol_tokenizer, build_messages("hi", "You are X."), "smollm2", True)
    assert text.startswith("<|im_start|>system\nYou are X.<|im_end|>") and text.endswith("<|im_start|>assistant\n")
