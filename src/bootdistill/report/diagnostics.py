"""Where KD helps: out-of-domain loss beside in-domain, and loss by teacher-difficulty bucket (SALT §5.4).

Out-of-domain text: the Python Language Reference topics that ship with every CPython (`pydoc_data.topics`,
the text behind `help("assert")` etc.; PSF licence): technical English with code, unlike Wikipedia. It is
tokenized with the run's own tokenizer and cached beside the prepared data (`ood-pydoc.npy`).

Difficulty buckets: every test token is scored by the teacher's loss on it; the teacher's tertiles split the
tokens into easy / medium / hard thirds, and each model's mean loss is reported per third.

Results are cached per run in RUN/evals/diagnostics.json, keyed by the checkpoint they came from.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from ..data.prepare import token_file
from ..data.tokenizer import token_dtype
from ..fsutil import atomic_write_bytes, atomic_write_json
from ..runtime.checkpoint import checkpoint_dirs
from .archive import final_checkpoint_name

BUCKETS = ("easy", "medium", "hard")
MAX_TOKENS = 100_000  # per evaluation set: differences between models on the same tokens are far more precise
#                      than the 3 decimals reported; the demo's report runs this for 3 models per student


def ood_text() -> tuple[str, str]:
    """(text, description) of the out-of-domain source."""
    from pydoc_data.topics import topics  # 1 MB of text, read only when diagnostics run

    text = "\n\n".join(topics[k] for k in sorted(topics))
    return text, f"Python {sys.version_info.major}.{sys.version_info.minor} reference topics (pydoc_data)"


def ood_tokens(prepared_dir: Path | str) -> tuple[np.ndarray, str]:
    """The OOD text as token ids of this prepared data's tokenizer (cached as ood-pydoc.npy)."""
    text, desc = ood_text()
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    cache = Path(prepared_dir) / f"ood-pydoc-{digest}.npy"
    if cache.is_file():
        return np.load(cache), desc
    tok = Tokenizer.from_file(str(Path(prepared_dir) / "tokenizer.json"))
    ids = np.asarray(tok.encode(text).ids, dtype=token_dtype(tok.get_vocab_size(with_added_tokens=True)))

    buf = io.BytesIO()
    np.save(buf, ids)
    try:
        atomic_write_bytes(cache, buf.getvalue())
    except Exception:  # a read-only data dir: the tokens are still right, only not cached
        pass
    return ids, desc


def _per_token_losses(model, tokens: np.ndarray, context: int, amp, max_tokens: int, device) -> np.ndarray:
    # torch loads only when diagnostics are computed: a report from cached ones does not load it (10-20 s on a slow VM)
    import torch
    import torch.nn.functional as F

    from ..data.loader import eval_batches
    from ..runtime.device import autocast_context

    out = []
    batches = max(1, max_tokens // (context * 8))
    with torch.no_grad():
        for x, y in eval_batches(tokens, context, 8, batches):
            with autocast_context(device, amp):
                logits = model(x.to(device))
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.to(device).flatten(), reduction="none")
            out.append(loss.cpu().numpy())
    return np.concatenate(out)


def run_diagnostics(student_path: Path, baseline_path: Path | None, teacher_path: Path, data_dir: Path | str,
                    amp_name: str = "float32", max_tokens: int = MAX_TOKENS, device: str = "auto") -> dict:
    """OOD and test loss, and test loss per teacher-difficulty third, for a student, its baseline and teacher."""
    import torch  # only when diagnostics are computed, as in _per_token_losses

    from ..runtime.accel import keep_freed_memory
    from ..runtime.device import resolve_device
    from ..runtime.loading import load_model_from_checkpoint

    dev = resolve_device(device, "--device ")
    keep_freed_memory(dev)
    amp = None if amp_name == "float32" else getattr(torch, amp_name)
    models = {"teacher": teacher_path, "student": student_path}
    if baseline_path is not None:
        models["baseline"] = baseline_path
    loaded = {k: load_model_from_checkpoint(p, dev) for k, p in models.items()}
    context = min(m.shape.context for m, _, _ in loaded.values())
    test = token_file(data_dir, "test")
    ood, ood_desc = ood_tokens(data_dir)
    losses = {k: _per_token_losses(m, test, context, amp, max_tokens, dev) for k, (m, _, _) in loaded.items()}
    edges = np.quantile(losses["teacher"], [1 / 3, 2 / 3])
    which = np.digitize(losses["teacher"], edges)  # 0 easy, 1 medium, 2 hard
    out = {"ood_source": ood_desc, "context": context, "test_tokens": int(len(losses["teacher"])),
           "teacher_loss_edges": [float(e) for e in edges], "models": {}}
    for k, (m, _, ckpt) in loaded.items():
        out["models"][k] = {
            "checkpoint": str(ckpt),
            "test_loss": float(losses[k].mean()),
            "ood_loss": float(_per_token_losses(m, ood, context, amp, max_tokens, dev).mean()),
            "buckets": {b: float(losses[k][which == i].mean()) for i, b in enumerate(BUCKETS)},
        }
    return out


def cached_diagnostics(student, baseline, teacher, threads: int | None = None, device: str = "auto") -> dict | None:
    """run_diagnostics for report Run objects, cached in the student's evals/diagnostics.json; None when a
    checkpoint is missing (hand-made or deleted runs)."""
    paths = [r.path for r in (student, baseline, teacher) if r is not None]
    if teacher is None:
        return None
    # run and checkpoint names, not paths: an archived or moved run keeps its cache
    key = "|".join([f"{p.name}/{final_checkpoint_name(p)}" for p in paths] + [str(MAX_TOKENS)])
    cache = student.path / "evals" / "diagnostics.json"
    try:
        cached = json.loads(cache.read_text()) if cache.is_file() else {}
    except (OSError, json.JSONDecodeError):
        cached = {}
    if cached.get("key") == key:
        return cached["result"]
    if any(not checkpoint_dirs(p) for p in paths):
        return None
    from ..runtime.accel import cpu_threads  # torch: only when diagnostics are computed

    s = student.summary or {}
    print(f"report: {student.name}: diagnostics (out-of-domain and teacher-difficulty losses of {len(paths)} models, "
          f"up to {2 * MAX_TOKENS:,} tokens each; cached in evals/)", file=sys.stderr, flush=True)
    with cpu_threads(threads):
        result = run_diagnostics(student.path, baseline.path if baseline else None, teacher.path,
                                 s["data"]["dir"], s.get("precision", "float32"), device=device)
    try:
        atomic_write_json(cache, {"key": key, "result": result})
    except Exception:
        pass
    return result
