import rlp
import pytest

from inference.exceptions import InvalidJob, PromptTooLong
from inference.jobs import JobSpec, get_prompt_tokens
from inference.models import DEFAULT_MODEL_SHA256

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi ✓"}]


def test_rlp_is_the_inference_request_payload():
    job = JobSpec.from_chat(MESSAGES, DEFAULT_MODEL_SHA256, 64)
    raw = rlp.encode([[[b"system", b"Be brief."], [b"user", "Hi ✓".encode()]], DEFAULT_MODEL_SHA256, 64])
    assert job.encode() == raw
    assert JobSpec.decode(raw) == job
    assert job.get_chat() == (("system", "Be brief."), ("user", "Hi ✓"))


@pytest.mark.parametrize(
    "messages, max_tokens",
    [
        ([], 16),
        ([{"role": "robot", "content": "x"}], 16),
        ([{"role": "user"}], 16),
        ([{"role": "user", "content": 3}], 16),
        (MESSAGES, 0),
        (MESSAGES, 4096),
    ],
)
def test_bad_jobs_are_typed_errors(messages, max_tokens):
    with pytest.raises(InvalidJob):
        JobSpec.from_chat(messages, DEFAULT_MODEL_SHA256, max_tokens)


def test_malformed_payloads_are_invalid_jobs():
    for data in (b"", b"\x01\x02", rlp.encode([b"x"]), rlp.encode([[[b"user", b"\xff"]], DEFAULT_MODEL_SHA256, 1])):
        with pytest.raises(InvalidJob):
            JobSpec.decode(data)


@pytest.mark.model
def test_prompt_uses_the_gguf_chat_template(model):
    job = JobSpec.from_chat([{"role": "user", "content": "Name a colour."}], model.sha256, 8)
    rendered = model.render_chat(job.get_chat())
    # SmolLM2's template (read from the GGUF) adds its default system turn and the generation prompt.
    assert rendered.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert rendered.endswith("<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n")
    tokens = get_prompt_tokens(model, job)
    assert tokens[0] == model.tokenize_chat(job.get_chat())[0]
    assert model.detokenize(tokens).endswith("Name a colour.\nassistant\n")  # special markers are not text


@pytest.mark.model
def test_prompt_longer_than_the_context_is_rejected(model):
    job = JobSpec.from_chat([{"role": "user", "content": "word " * 2100}], model.sha256, 16)
    with pytest.raises(PromptTooLong) as caught:
        get_prompt_tokens(model, job)
    assert caught.value.context_tokens == 2048
