"""data.tokenizer other than `bpe`: a tokenizer someone else trained (a `tokenizer.json`, a Hugging Face tokenizer
directory, or a hub name), used as it is.

Its end-of-text token (eos, else bos) becomes the document separator of the token stream. Its identity, a sha256
over its file(s), goes into the prepared-data key, so two tokenizers never share a prepared directory.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .sources import hub_reachable
from .tokenizer import file_sha256, load_tokenizer

# end-of-text names, tried in order when a bare tokenizer.json says nothing about its special tokens
EOS_NAMES = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|eos|>", "[SEP]", "<|im_end|>")
BOS_NAMES = ("<|begin_of_text|>", "<s>", "<bos>", "[CLS]")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "tokenizer.model", "vocab.txt")


@dataclass
class PretrainedTokenizer:
    tok: object  # tokenizers.Tokenizer
    sep_id: int  # the document separator: the tokenizer's eos (else bos) token
    sep_token: str
    vocab_size: int  # ids 0 .. vocab_size-1, added tokens included
    identity: str  # sha256 over the tokenizer's file(s)
    spec: str  # what data.tokenizer said


def is_bpe(spec: str | None) -> bool:
    return spec is None or str(spec).strip().lower() == "bpe"


def load_pretrained_tokenizer(spec: str) -> PretrainedTokenizer:
    """A tokenizer.json file, a Hugging Face tokenizer directory, or a hub name (needs network or the hub cache)."""
    path = Path(spec).expanduser()
    if path.is_file():
        return _from_json_file(path, spec)
    if path.is_dir():
        if not any((path / f).is_file() for f in TOKENIZER_FILES):
            raise DataError(f"data.tokenizer directory '{spec}' holds no tokenizer files (tokenizer.json, "
                            "tokenizer_config.json ...): give a Hugging Face tokenizer directory or a tokenizer.json")
        hf = _auto_tokenizer(str(path), spec, local_files_only=True)
        digest = hashlib.sha256()
        for name in TOKENIZER_FILES:  # the files that define the tokenizer, in a fixed order
            if (path / name).is_file():
                digest.update(name.encode() + b"\0" + file_sha256(path / name).encode())
        return _from_hf(hf, spec, digest.hexdigest())
    if spec.startswith((".", "/", "~")) or spec.endswith(".json"):
        raise DataError(f"data.tokenizer '{spec}' does not exist: give bpe, a tokenizer.json, a Hugging Face "
                        "tokenizer directory or a hub name")
    offline = not hub_reachable()  # then only the hub cache, at once, rather than minutes of retries
    hf = _auto_tokenizer(spec, spec, local_files_only=offline, hub=True)
    backend = hf.backend_tokenizer.to_str()  # a hub name: its files live in the hub cache; hash what they define
    return _from_hf(hf, spec, hashlib.sha256(f"{spec}\0{backend}".encode()).hexdigest())


def _from_json_file(path: Path, spec: str) -> PretrainedTokenizer:
    tok = _whole_documents(load_tokenizer(path))
    vocab = tok.get_vocab(with_added_tokens=True)
    specials = {t.content for t in tok.get_added_tokens_decoder().values() if t.special}
    for name in EOS_NAMES + BOS_NAMES:
        if name in vocab and (name in specials or not specials):
            return PretrainedTokenizer(tok, vocab[name], name, max(vocab.values()) + 1, file_sha256(path), spec)
    raise DataError(f"tokenizer '{spec}' has no end-of-text token ({' '.join(EOS_NAMES)}) to separate documents: "
                    "give its Hugging Face directory (its tokenizer_config.json names eos_token)")


def _auto_tokenizer(name: str, spec: str, local_files_only: bool, hub: bool = False):
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise DataError("data.tokenizer=DIR or a hub name needs transformers: pip install 'bootdistill[hf]'") from None
    try:
        hf = AutoTokenizer.from_pretrained(name, local_files_only=local_files_only)
    except (OSError, ValueError, KeyError) as e:
        where = ""
        if hub:
            where = (" (the Hugging Face hub is unreachable and it is not in the hub cache: download it where there "
                     "is network, or give a local tokenizer directory)" if local_files_only else " from the hub")
        raise DataError(f"data.tokenizer '{spec}' cannot be loaded as a Hugging Face tokenizer{where}: "
                        f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not getattr(hf, "is_fast", False):
        raise DataError(f"data.tokenizer '{spec}' has no fast (Rust `tokenizers`) version: give one with a tokenizer.json")
    return hf


def _from_hf(hf, spec: str, identity: str) -> PretrainedTokenizer:
    sep_id = hf.eos_token_id if hf.eos_token_id is not None else hf.bos_token_id
    if sep_id is None:
        raise DataError(f"tokenizer '{spec}' has neither an eos nor a bos token to separate documents: "
                        "set eos_token in its tokenizer_config.json")
    vocab = hf.backend_tokenizer.get_vocab(with_added_tokens=True)
    return PretrainedTokenizer(_whole_documents(hf.backend_tokenizer), int(sep_id), hf.convert_ids_to_tokens(int(sep_id)),
                               max(vocab.values()) + 1, identity, spec)


def _whole_documents(tok):
    """Some shipped tokenizer.json files truncate (e.g. at 512 tokens) or pad: documents must pass whole."""
    tok.no_truncation()
    tok.no_padding()
    return tok
