"""A public model as the teacher: a student prepared with data.tokenizer=the teacher's tokenizer distils from
distill.teacher=hf:PATH through the CLI. The teachers (a tiny LlamaForCausalLM with a padded vocabulary, a tiny
GPT2LMHeadModel) and their tokenizers are built and saved here; nothing is downloaded."""

import json

import numpy as np
import pytest
import torch

from conftest import run_main, save_teacher, tiny_overrides

transformers = pytest.importorskip("transformers")  # the [hf] extra


def last_line(r) -> str:
    return r.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_public_model_teaches_a_student_through_the_cli(kind, tiny_corpus, tmp_path):
    from bootdistill.data.loader import BlockSampler
    from bootdistill.data.prepare import load_meta, token_file
    from bootdistill.runtime.loading import load_model_from_checkpoint

    teacher_dir = tmp_path / kind
    hf, tok = save_teacher(teacher_dir, tiny_corpus, kind)
    if kind == "llama":
        assert hf.config.vocab_size > len(tok)  # padded: the KD signal must drop the padding rows
    out, prepared = tmp_path / "student", tmp_path / "prepared"
    # lr 0: the student keeps its initial weights, so its last checkpoint gives its logits at the first batch
    r = run_main("train", *tiny_overrides(tiny_corpus, out, prepared, **{
        "data.tokenizer": teacher_dir, "distill.teacher": f"hf:{teacher_dir}", "distill.policy": "kd",
        "distill.alpha": 0.5, "distill.temperature": 1.0, "train.precision": "fp32", "model.dropout": 0.0, "train.lr_max": 0.0,
        "train.batch_tokens": 128, "train.total_steps": 2, "train.log_every": 1, "train.eval_every": 2}))
    assert r.returncode == 0, r.stderr
    meta = load_meta(prepared)
    assert meta["vocab_size"] == len(tok) and meta["sep_id"] == tok.eos_token_id and meta["dtype"] == "uint16"
    train = token_file(prepared, "train")
    article = (tiny_corpus / "wiki.train.raw").read_text().split(" = Article 1-1 = ")[0].removeprefix(" \n")
    first = tok(article, add_special_tokens=False)["input_ids"]
    assert list(train[:len(first) + 1]) == first + [tok.eos_token_id]  # the teacher's ids, its eos between articles

    student, _, _ = load_model_from_checkpoint(out)
    x, _ = BlockSampler(train, 32, 4, 1337).next_batch()  # the first batch (train.seed's order)
    with torch.no_grad():
        t = hf(input_ids=x).logits[..., : len(tok)].log_softmax(-1)
        s = student(x).log_softmax(-1)
    want = (t.exp() * (t - s)).sum(-1).mean().item()  # KL(teacher || student) per token, tau 1
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 1 and rows[0]["kd_loss"] == pytest.approx(want, rel=1e-4)
    summary = json.loads((out / "summary.json").read_text())
    n = sum(p.numel() for p in hf.parameters())
    assert summary["teacher"]["n_params"] == n and summary["teacher"]["train_flops"] is None
    assert summary["flops"]["flops_teacher_inference"] == pytest.approx(2 * 128 * 2 * n)
    assert summary["flops"]["flops_teacher_train"] == 0.0 and "unknown" in summary["teacher"]["train_flops_note"]


def test_teacher_with_other_ids_or_a_smaller_vocabulary_is_refused(tiny_corpus, tmp_path):
    gpt2_dir = tmp_path / "gpt2"
    _, tok = save_teacher(gpt2_dir, tiny_corpus, "gpt2")
    student = {"distill.policy": "kd", "distill.teacher": f"hf:{gpt2_dir}"}
    # the student's own BPE: other ids; the error says which setting fixes it
    r = run_main("train", *tiny_overrides(tiny_corpus, tmp_path / "s", tmp_path / "bpe", **student))
    assert r.returncode == 2 and last_line(r).startswith("error:") and f"data.tokenizer={gpt2_dir}" in last_line(r)
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "s").exists()
    # the same tokenizer with a vocabulary cut below it
    small = tmp_path / "small"
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=len(tok) - 10, n_positions=64, n_embd=32, n_layer=1,
                                                         n_head=2)).save_pretrained(small)
    tok.save_pretrained(small)
    r = run_main("train", *tiny_overrides(tiny_corpus, tmp_path / "s", tmp_path / "own", **{
        **student, "data.tokenizer": gpt2_dir, "distill.teacher": f"hf:{small}"}))
    assert r.returncode == 2 and "smaller than the student's tokenizer" in last_line(r) and "Traceback" not in r.stderr
    assert not (tmp_path / "s").exists()


def test_export_of_a_run_with_a_given_tokenizer(tiny_corpus, tmp_path):
    """`export` writes the given tokenizer with its own separator; the exported model loads and scores like ours;
    `eval --text` reads text with that tokenizer."""
    from bootdistill.runtime.loading import load_model_from_checkpoint
    from bootdistill.runtime.device import autocast_context
    from bootdistill.runtime.device import resolve_precision

    gpt2_dir = tmp_path / "gpt2"
    _, tok = save_teacher(gpt2_dir, tiny_corpus, "gpt2")
    out = tmp_path / "run"
    r = run_main("train", *tiny_overrides(tiny_corpus, out, tmp_path / "prep", **{
        "data.tokenizer": gpt2_dir, "train.total_steps": 2, "train.precision": "fp32"}))
    assert r.returncode == 0, r.stderr
    r = run_main("export", str(out), str(tmp_path / "hf"))
    assert r.returncode == 0, r.stderr
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    assert len(hf_tok) == len(tok) and hf_tok.eos_token_id == tok.eos_token_id == model.config.eos_token_id
    text = "the river was known as the north station"
    assert hf_tok(text)["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    ours, _, _ = load_model_from_checkpoint(out)
    x = torch.tensor([hf_tok(text)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=x).logits, ours(x), rtol=1e-4, atol=1e-4)
    # eval --text reads the text with the given tokenizer, after its eos (the separator)
    (tmp_path / "mine.txt").write_text(text)
    r = run_main("eval", str(out), "--text", str(tmp_path / "mine.txt"), "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    ids = torch.tensor([tok.eos_token_id, *tok(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad(), autocast_context(torch.device("cpu"), resolve_precision("auto", torch.device("cpu"))[0]):
        nats = torch.nn.functional.cross_entropy(ours(ids[None, :-1])[0].float(), ids[1:], reduction="sum").item()
    assert got["tokens"] == len(ids) - 1 and got["bytes"] == len(text)
    assert got["bits_per_byte"] == pytest.approx(nats / np.log(2) / len(text), rel=1e-3)
