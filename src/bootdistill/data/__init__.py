"""Corpus -> tokenizer -> token files (paper §2.1).

    from bootdistill.data import prepare, token_file, load_meta
    out = prepare(cfg.data)                  # tokenizer.json, train.bin, val.bin, test.bin, meta.json
    train = token_file(out, "train")         # np.memmap (uint16, uint32 above 65,535 ids): article tokens + separator, concatenated
"""

from .prepare import check_tokenizer_matches, dataset_key, load_meta, prepare, token_file
from .sources import Corpus, resolve_corpus
from .tokenizer import SEP_ID, SPECIAL_TOKENS, load_tokenizer, train_tokenizer

__all__ = [
    "prepare",
    "load_meta",
    "token_file",
    "check_tokenizer_matches",
    "dataset_key",
    "resolve_corpus",
    "Corpus",
    "load_tokenizer",
    "train_tokenizer",
    "SEP_ID",
    "SPECIAL_TOKENS",
]
