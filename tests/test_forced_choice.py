"""evaluation/forced_choice.py and the hf backend's choice_logprobs: every candidate scored as the
whole reply, on the real embedded SmolLM2, checked against a plain forward pass of prompt + reply."""
from __future__ import annotations

import math
import string

import pytest
from helpers import make_config

from spelling_exp.evaluation import forced_choice
from spelling_exp.tasks import get


@pytest.fixture(scope="module")
def backend(cache_dir):
    from spelling_exp.evaluation.backends.hf import build

    cfg = make_config("eval/sampling=greedy")
    return build(cfg.eval, cfg.model, None, str(cache_dir))


def _reply_logprob(backend, prompt: str, reply: str) -> float:
    """log P(reply + end of turn | prompt) from one forward pass over the whole sequence."""
    import torch

    tok = backend.tok
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    ids = p_ids + tok(reply, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    with torch.inference_mode():
        logp = torch.log_softmax(backend._model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    return sum(logp[j - 1, ids[j]].item() for j in range(len(p_ids), len(ids)))


@pytest.mark.slow  # loads the real model (~16 s cold)
def test_batched_choice_logprobs_equal_the_whole_reply_logprob(backend):
    prompts = backend.render(['Which letter comes third in the word "pelican"? Reply with just that letter.',
                              'How many times does "r" appear in "strawberry"? Reply with just the number.',
                              "Spell 'elephantine', then give its 4th letter."])  # three lengths: left padding
    options = ["c", "L", "3", "12", "e"]
    got = backend.choice_logprobs(prompts, options, batch_size=2)
    for prompt, row in zip(prompts, got):
        for option, lp in zip(options, row):
            assert lp == pytest.approx(_reply_logprob(backend, prompt, option), abs=2e-3), (prompt[-40:], option)


def test_a_letter_is_one_candidate_in_either_case_and_the_choice_is_the_most_probable():
    q = {"id": "position-1", "task": "position", "word": "pelican", "answer": "l"}
    choices = get("position").choices(q)
    assert set(choices) == set(string.ascii_lowercase) and choices["l"] == ["l", "L"]
    lp = {f: -20.0 for fs in choices.values() for f in fs}
    lp.update({"l": math.log(0.2), "L": math.log(0.3), "e": math.log(0.4)})  # l + L = 0.5 beats e = 0.4
    row = forced_choice._row(q, choices, lp)
    assert row["choice"] == "l" and row["correct"] and row["p_right"] == pytest.approx(0.5 / 0.9, rel=1e-3)
    assert get("count").choices({"word": "strawberry"}) == {str(i): [str(i)] for i in range(13)}


def test_summary_accuracy_calibration_and_agreement_with_bare_replies():
    rows = [{"id": str(i), "choice": "a", "correct": i < 3, "p_right": 0.9 if i < 3 else 0.1,
             "confidence": 0.9} for i in range(4)]
    preds = [{"id": "0", "reply": "a", "parsed": "a"}, {"id": "1", "reply": "B.", "parsed": "b"},
             {"id": "2", "reply": "The letter is a", "parsed": "a"}]
    s = forced_choice.summarize(rows, preds)
    assert s["accuracy"]["k"] == 3 and s["accuracy"]["rate"] == 0.75
    assert s["ece"] == pytest.approx(abs(0.75 - 0.9))  # one bin: |accuracy - confidence|
    assert s["agrees_with_bare_replies"] == {"n": 2, "rate": 0.5}  # "a" agrees, "B." does not; a sentence is not bare


def test_a_backend_that_cannot_score_candidates_is_skipped_not_faked():
    class Server:  # the openai/llamacpp backends: replies only
        name = "openai"

    assert not forced_choice.supported(Server())


@pytest.mark.slow  # loads the real model
def test_closing_the_hf_backend_gives_its_weights_back(backend):
    import gc
    import weakref

    backend.choice_logprobs(backend.render(["Spell 'cat'."]), ["c"])  # loads the weights
    alive = weakref.ref(backend._model)
    backend.close()
    gc.collect()
    assert backend._model is None and alive() is None  # nothing holds the model: its memory is free
