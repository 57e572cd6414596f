"""Errors a user can cause with bad input or config.

The CLI turns any ``SpellingExpError`` into one line on stderr and exit code 2; anything
else is a bug and keeps its traceback.
"""


class SpellingExpError(Exception):
    """Base class: a problem with the user's input or configuration."""


class ConfigError(SpellingExpError):
    """A config value is valid YAML/type-wise but makes no sense (unknown name, zero weight...)."""


class ThinkingModeError(ConfigError):
    """Somebody tried to enable Qwen3 thinking mode; this project forbids it."""


class WordListError(SpellingExpError):
    """A word list is missing, unreadable or empty."""


class SizeError(SpellingExpError):
    """A requested size cannot be satisfied by the available words."""


class HoldoutOverlapError(SpellingExpError):
    """Hold-out words intersect training words."""


class ModelLoadError(SpellingExpError):
    """A model or tokenizer cannot be located or loaded."""


class ServerError(SpellingExpError):
    """An inference server stopped answering (after the client's retries) or could not start;
    the finished batches of predictions are kept and a rerun resumes."""


class TrainingInterrupted(Exception):
    """Training stopped on a preemption signal after saving a checkpoint.

    Not a user error and not a bug: the CLI reports it in one line, records the job as
    ``interrupted`` (so a sweep rerun redoes it) and exits 3; rerunning resumes.
    """
    exit_code = 3


def require(ok: bool, key: str, value: object, requirement: str) -> None:
    """One line naming the key, its value and what it must be: ``train.batch_size=0: must be >= 1``."""
    if not ok:
        raise ConfigError(f"{key}={value}: must be {requirement}")


class Interrupted(BaseException):
    """SIGTERM outside training's own handling. A BaseException, like KeyboardInterrupt, so no
    ``except Exception`` swallows it; the CLI reports it in one line and exits 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def raise_interrupted(signum: int, frame: object) -> None:
    """The CLI's SIGTERM handler."""
    raise Interrupted(signum)
