"""Unsloth trains in a fresh Python process: the recipe's setup -> run -> save_adapter in a child.

Why a fresh process. Unsloth must be imported before transformers / trl / peft (it patches them as
it loads), and by the time the train stage runs, the data or evaluation stages (even the tokenizer)
have imported them in this process. Its global patches of transformers must also stay out of the
evaluation stages that follow in this process. So with the unsloth backend the recipe trains in a
child that imports unsloth first, unless this process imported unsloth first itself
(``needs_fresh_process``).

The parent (still holding the recipe's cache lock) pickles the request: the ``TrainJob`` and the
recipe's in-process training function, pickled by name so that this module does not import the
recipe (the recipe imports it). It forwards SIGTERM / SIGUSR1 / SIGUSR2 to the child, which
checkpoints and stops (exit 3), turns the child's outcome back into the same result or error as
in-process training, and replays the child's training log to ``on_log`` (the tracker's curve).
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spelling_exp.errors import ConfigError, SpellingExpError, TrainingInterrupted
from spelling_exp.storage.io import atomic_write_json, read_json
from spelling_exp.training.job import LogFn, TrainJob
from spelling_exp.training.trainer import PREEMPTION_SIGNALS, interrupted

log = logging.getLogger(__name__)
TrainFn = Callable[[TrainJob], dict[str, Any]]  # setup -> run -> save_adapter in this process: train_info
# Before fresh_process_main imports unsloth, the child imports only this module and (unpickling the
# request) the recipe and the configs: none of them imports transformers, trl or peft.
CHILD_CODE = ("import sys; from spelling_exp.training.isolation import fresh_process_main; "
              "sys.exit(fresh_process_main())")


def needs_fresh_process(backend: str, modules: Any = None) -> bool:
    """Unsloth trains in a fresh process unless this process imported unsloth before transformers,
    trl and peft (it is that process, or a script that imported unsloth first on purpose)."""
    if backend != "unsloth":
        return False
    from spelling_exp.training.model import imported_before_unsloth

    modules = sys.modules if modules is None else modules
    return "unsloth" not in modules or bool(imported_before_unsloth(modules))


# ----------------------------------------------------------------------------------- parent
def train_adapter_in_fresh_process(work: TrainFn, job: TrainJob, backend: str,
                                   on_log: LogFn | None = None) -> dict[str, Any]:
    """``work(job)`` in a child Python process: same result, errors and signals as in-process."""
    from spelling_exp.training.model import PATCHED_BY_UNSLOTH

    job.out.mkdir(parents=True, exist_ok=True)
    request, result = job.out / f".child.{os.getpid()}.request.pkl", job.out / f".child.{os.getpid()}.result.json"
    result.unlink(missing_ok=True)
    request.write_bytes(pickle.dumps({"work": work, "job": job, "backend": backend, "result": result,
                                      "threads": torch_threads(), "log_files": log_files()}))
    log.info("train.backend=%s: training in a fresh process (unsloth must be imported before %s)", backend,
             ", ".join(PATCHED_BY_UNSLOTH))
    try:
        code, received, previous = run_child(request)
    finally:
        request.unlink(missing_ok=True)
    outcome = read_json(result) if result.is_file() else {"status": "crashed"}
    result.unlink(missing_ok=True)
    return result_or_error(outcome, code, received, previous, job.out, on_log)


def torch_threads() -> int | None:
    """This process's torch thread count (num_threads), for the child; None before torch is imported."""
    return sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None


def log_files() -> list[str]:
    """The files this process logs to (Hydra's <job>.log): the child logs there too."""
    return [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


def run_child(request: Path) -> tuple[int, list[int], dict[int, Any]]:
    """Start the child on ``request`` and wait for it, forwarding preemption signals to it.
    Returns its exit code, the signals received and the handlers installed before ours."""
    received: list[int] = []
    child: list[subprocess.Popen] = []

    def forward(signum, frame):  # a signal before the child exists is sent once it does
        received.append(signum)
        log.warning("received signal %d: the training process checkpoints after this step, then stops", signum)
        for proc in child:
            proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in PREEMPTION_SIGNALS}
    try:
        child.append(subprocess.Popen([sys.executable, "-c", CHILD_CODE, str(request)]))
        for signum in received:
            child[0].send_signal(signum)
        return wait(child[0]), received, previous
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def wait(proc: subprocess.Popen) -> int:
    try:
        return proc.wait()
    except BaseException:  # Ctrl-C reached the child too: let it stop, then stop it
        try:
            proc.wait(timeout=30)
        except BaseException:
            proc.kill()
            proc.wait()
        raise


def result_or_error(outcome: dict[str, Any], code: int, received: list[int], previous: dict[int, Any], out: Path,
                    on_log: LogFn | None) -> dict[str, Any]:
    """The child's outcome as in-process training ends: its train_info, or the error it would raise."""
    status = outcome["status"]
    if status == "ok":
        if on_log:
            for record in json.loads((out / "adapter" / "training_log.json").read_text()):
                on_log(record, record.get("step", 0))
        return outcome["info"]
    if status == "interrupted":
        # the signal this process received, handed on to its previous handler as in-process training does
        signum = received[0] if received else outcome["signal"]
        raise interrupted(signum, outcome["step"], previous.get(signum), out)
    if status == "user_error":
        raise ConfigError(outcome["message"])
    raise RuntimeError(f"the training process failed (exit {code}): {outcome.get('message', 'no result written')}; "
                       "its traceback is above")


# ------------------------------------------------------------------------------------ child
def fresh_process_main(request_path: str | None = None) -> int:
    """The child's entry point: import unsloth first (for that backend), then ``work(job)``.
    Writes its outcome as JSON for the parent; 0 done, 2 a user error, 3 interrupted, 1 a bug."""
    req = pickle.loads(Path(request_path or sys.argv[1]).read_bytes())
    if req["backend"] == "unsloth":
        from spelling_exp.training.model import import_unsloth_first, mark_dropout_warned

        import_unsloth_first()  # before anything imports transformers, trl or peft
        mark_dropout_warned()  # the parent already warned
    log_like_the_parent(req["log_files"])
    if req["threads"]:
        import torch

        torch.set_num_threads(req["threads"])
    try:
        outcome, code = {"status": "ok", "info": req["work"](req["job"])}, 0
    except TrainingInterrupted as e:  # a Preempted from the recipe's run: its signal and step
        outcome = {"status": "interrupted", "message": str(e), "signal": getattr(e, "signum", None),
                   "step": getattr(e, "step", None)}
        code = e.exit_code
    except SpellingExpError as e:
        outcome, code = {"status": "user_error", "message": str(e)}, 2
    except Exception as e:
        log.exception("training failed")
        outcome, code = {"status": "error", "message": f"{type(e).__name__}: {e}"}, 1
    atomic_write_json(req["result"], outcome)
    return code


def log_like_the_parent(files: list[str]) -> None:
    """INFO to the console and to the parent's job log (Hydra's <job>.log), in Hydra's format."""
    fmt = logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in [logging.StreamHandler()] + [logging.FileHandler(f) for f in files]:
        handler.setFormatter(fmt)
        root.addHandler(handler)
