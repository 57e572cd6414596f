"""OpenAI-compatible server backend: /v1/completions with the exact prompt string we render.

Any server that speaks the OpenAI completions API works: ``vllm serve`` (an adapter served with
``--lora-modules NAME=PATH`` is just another model name), llama.cpp's server, SGLang, Ollama.
We never send chat messages: the server would apply its own chat template, and the prompt (the
system prompt, Qwen3's non-thinking suffix) would no longer be the one the ``hf`` backend sees.

One request per reply (a question with ``n_samples`` replies is ``n_samples`` requests, each
with its own seed), so every reply is reproducible on its own and servers that ignore ``n``
or share one seed across ``n`` cannot collapse the samples. Requests run ``max_concurrency`` at
a time. The openai client retries 408/409/429/5xx and connection errors with exponential
backoff; any other 4xx is turned into one line naming the setting to fix.

The API key is read from the environment variable named by ``eval.openai.api_key_env``; it
is handed to the client and nowhere else (never logged, never in a config or an output).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from spelling_exp.config import EvalConfig, ModelConfig, OpenAIBackendConfig, SamplingConfig
from spelling_exp.errors import ConfigError, ServerError, SpellingExpError, require
from spelling_exp.evaluation.backends import Reply
from spelling_exp.evaluation.backends.prompts import ChatPrompts

log = logging.getLogger(__name__)
SEED_SPACE = 2**31 - 1  # servers take a 32-bit seed

SETTINGS = ("openai",)
NOT_IN_IDENTITY = {
    "openai.api_key_env": "the key lets us in; the server, its URL and served name decide the reply",
    # A shared server batches our requests with everybody else's: how many we keep in flight does
    # not decide its batches, so no key could capture them (llamacpp keys its own server's slots).
    "openai.max_concurrency": "how many requests wait at once, not how the server batches them",
    "openai.timeout_s": "how long to wait for a reply, not which reply",
    "openai.max_retries": "how often to ask again after a failure; a reply that comes is the same",
}


def identity(eval_cfg: EvalConfig) -> dict[str, Any]:
    """A server's weights cannot be fingerprinted from here: the identity is its URL (the served
    model name, the adapter's analogue, is keyed apart by ``served_model``). The cache trusts a
    server to serve the same weights under the same name (eval.use_cache=false otherwise)."""
    return {"base_url": eval_cfg.openai.base_url}


def served_model(eval_cfg: EvalConfig, adapter: str | None) -> str | None:
    """The name the server is asked for: the adapter's served name when an adapter is evaluated."""
    return eval_cfg.openai.adapter_model if adapter else eval_cfg.openai.model


def check(eval_cfg: EvalConfig, model: ModelConfig, evaluates_adapter: bool) -> None:
    if eval_cfg.merge_adapter:  # never silently ignored: the server holds the weights
        raise ConfigError("eval.merge_adapter=true: the openai backend asks a server, which applies (or merged) "
                          "the adapter itself; set eval.merge_adapter=false")
    s = eval_cfg.openai
    require_server_settings(s.base_url, s.model, adapter=False)
    if evaluates_adapter:
        require_server_settings(s.base_url, s.adapter_model, adapter=True)
    require(s.max_concurrency >= 1, "eval.openai.max_concurrency", s.max_concurrency, ">= 1")
    require(s.timeout_s > 0, "eval.openai.timeout_s", s.timeout_s, "> 0")
    require(s.max_retries >= 0, "eval.openai.max_retries", s.max_retries, ">= 0")


def build(eval_cfg: EvalConfig, model: ModelConfig, adapter: str | None, cache_dir: str,
          work_dir: Path | None = None) -> OpenAIBackend:
    e = eval_cfg
    return OpenAIBackend(model, e.sampling, e.max_new_tokens, e.n_samples, adapter=adapter, cache_dir=cache_dir,
                         settings=e.openai)


def sampling_params(sampling: SamplingConfig) -> dict[str, Any]:
    """Request fields for the sampling settings. top_k / min_p are not OpenAI fields: vLLM,
    llama.cpp and SGLang read them from the request body (``extra_body``)."""
    if sampling.greedy:
        return {"temperature": 0.0}
    return {"temperature": sampling.temperature, "top_p": sampling.top_p,
            "extra_body": {"top_k": sampling.top_k, "min_p": sampling.min_p}}


def request_seed(seed: int, prompt_index: int, sample: int, n_samples: int) -> int:
    return (seed * 7919 + prompt_index * n_samples + sample) % SEED_SPACE


def require_server_settings(base_url: str | None, served_model: str | None, adapter: bool) -> None:
    """The two settings without which no request can be sent (the CLI checks them up front too)."""
    if not base_url:
        raise ConfigError("eval.openai.base_url is not set: the server's URL, e.g. http://localhost:8000/v1")
    if not served_model and adapter:
        raise ConfigError("eval.openai.adapter_model is not set: the name the server serves the adapter under "
                          "(vllm serve ... --enable-lora --lora-modules NAME=<adapter dir>)")
    if not served_model:
        raise ConfigError("eval.openai.model is not set: the name the server serves the base model under")


class OpenAIBackend(ChatPrompts):
    name = "openai"

    def __init__(self, model: ModelConfig, sampling: SamplingConfig, max_new_tokens: int, n_samples: int = 1,
                 adapter: str | None = None, cache_dir: str | None = None,
                 settings: OpenAIBackendConfig | None = None, base_url: str | None = None,
                 served_model: str | None = None, api_key: str | None = None):
        super().__init__(model, cache_dir)
        s = settings or OpenAIBackendConfig()
        self.settings, self.max_new_tokens, self.n_samples = s, max_new_tokens, n_samples
        self.base_url = base_url or s.base_url
        key = "eval.openai.adapter_model" if adapter else "eval.openai.model"
        self.model_key, self.served_model = key, served_model or (s.adapter_model if adapter else s.model)
        require_server_settings(self.base_url, self.served_model, adapter=bool(adapter))
        self._api_key = api_key if api_key is not None else os.environ.get(s.api_key_env)
        self.sampling = sampling_params(sampling)
        self._client: Any = None
        self._pool: ThreadPoolExecutor | None = None

    # ---------------------------------------------------------------- connection
    def _connect(self) -> Any:
        import openai

        # httpx logs every request at INFO and openai its options at DEBUG: neither carries the
        # key, but nothing about requests belongs in an evaluation log either.
        for name in ("openai", "httpx", "httpx2", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
        client = openai.OpenAI(base_url=self.base_url, api_key=self._api_key or "no-key",
                               timeout=self.settings.timeout_s, max_retries=self.settings.max_retries)
        try:
            served = client.models.list().data
        except openai.APIStatusError as e:
            raise self._status_error(e) from None
        except openai.APIConnectionError as e:
            raise ServerError(f"eval.openai.base_url={self.base_url}: no server answers ({_cause(e)}) after "
                              f"{self.settings.max_retries} retries; start it or fix the URL") from None
        names = {m.id for m in served} | {a for m in served for a in (getattr(m, "aliases", None) or [])}
        if self.served_model not in names:
            raise ConfigError(f"{self.model_key}={self.served_model}: {self.base_url} does not serve this model; "
                              f"it serves {sorted(m.id for m in served)}")
        self.server_model = next((m.model_dump() for m in served if self.served_model in
                                  {m.id, *(getattr(m, "aliases", None) or [])}), {})
        self._pool = ThreadPoolExecutor(max_workers=max(1, self.settings.max_concurrency),
                                        thread_name_prefix="openai-request")
        return client

    def _status_error(self, e: Any) -> SpellingExpError:
        code = e.status_code
        detail = _server_message(e)
        if code in (401, 403):
            return ConfigError(f"eval.openai.api_key_env={self.settings.api_key_env}: the server refused the key "
                               f"(HTTP {code}); export a valid key in ${self.settings.api_key_env}")
        if code == 404:
            return ConfigError(f"{self.model_key}={self.served_model}: the server has no such model "
                               f"(HTTP 404 at {self.base_url}: {detail})")
        if 400 <= code < 500:
            return ConfigError(f"eval.openai: the server refused the request (HTTP {code}: {detail}); check "
                               "eval.max_new_tokens, eval.sampling and the model's context length")
        return ServerError(f"eval.openai.base_url={self.base_url}: HTTP {code} after "
                           f"{self.settings.max_retries} retries ({detail}); rerun to resume")

    # ---------------------------------------------------------------- generation
    def _one(self, prompt: str, seed: int) -> Reply:
        import openai

        kwargs = dict(self.sampling)
        try:
            r = self._client.completions.create(model=self.served_model, prompt=prompt,
                                                max_tokens=self.max_new_tokens, n=1, seed=seed,
                                                stop=[self.end_of_turn()], **kwargs)
        except openai.APIStatusError as e:
            raise self._status_error(e) from None
        except openai.APIConnectionError as e:  # includes timeouts, after the client's retries
            raise ServerError(f"eval.openai.base_url={self.base_url}: the server stopped answering "
                              f"({_cause(e)}) after {self.settings.max_retries} retries; the finished batches are "
                              "kept, rerun to resume") from None
        choice = r.choices[0]
        return Reply(choice.text or "", choice.finish_reason == "length")

    def submit(self, prompts: Sequence[str], seed: int) -> list[Future]:
        """Queue a batch's requests and return at once; ``collect`` waits for them. The recipe
        submits the next batches while one finishes, so the server's slots do not idle at batch
        boundaries (replies are still written batch by batch, in order)."""
        if self._client is None:
            self._client = self._connect()
        assert self._pool is not None
        n = self.n_samples
        return [self._pool.submit(self._one, p, request_seed(seed, i, s, n))
                for i, p in enumerate(prompts) for s in range(n)]

    def collect(self, futures: list[Future]) -> list[list[Reply]]:
        try:
            replies = [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        n = self.n_samples
        return [replies[i * n:(i + 1) * n] for i in range(len(replies) // n)]

    def generate(self, prompts: Sequence[str], seed: int) -> list[list[Reply]]:
        return self.collect(self.submit(prompts, seed))

    def close(self) -> None:
        # Not waiting for requests in flight: on an error or a signal they are abandoned (their
        # replies were never written), and closing the client's connections ends them promptly.
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None


def _cause(e: BaseException) -> str:
    inner = e.__cause__ or e.__context__
    return f"{type(inner).__name__}: {inner}" if inner else str(e)


def _server_message(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        msg = err.get("message") if isinstance(err, dict) else err
        if msg:
            return str(msg)[:300]
    return str(getattr(e, "message", e))[:300]
