"""A Hugging Face user's whole path, with real torch and transformers (the venv of
tools/python-venv.sh hf) and a real `wsm`; nothing from the hub (the tokenizer is trained here):

1. a tiny GPT-2 trained by transformers.Trainer for 60 steps at constant LR after warmup
   (constant_with_warmup), checkpoint-N every 10 steps;
2. the user's WSD baseline: that run resumed from checkpoint-40 with warmup_stable_decay (decay 20);
3. a second run streamed by wsm_client.hf.WsmCallback into `wsm serve --format hf --eval-cmd`
   scoring with tools/examples/hf_eval.py; its merges checked against a float64 merge of the
   run's own checkpoint-N files, `wsm report` shows raw lines;
4. `wsm compare sweep --baseline wsd=...` over run 1's folders with hf_eval.py: every model scored,
   every model a directory from_pretrained loads with no missing or unexpected keys in the dtype
   its config.json names, the ranking holds scored models only, the report compares with the baseline;
5. a sharded run (two ranks, two daemons) whose step directory `wsm convert` turns into a loadable
   Hugging Face directory, equal to load_state_dict of the parts and to a float64 merge.
WSM_BIN names wsm, WSM_SOURCE_DIR the repository."""
import glob
import json
import logging
import math
import os
import pathlib
import shlex
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np
import torch
import transformers

import wsm_client
from wsm_client.hf import WsmCallback

SOURCE = pathlib.Path(os.environ.get("WSM_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(SOURCE / "tests/protocol/python"))
from daemon import WSM_BIN, Daemon, free_port, wait_until  # noqa: E402

HF_EVAL = SOURCE / "tools/examples/hf_eval.py"
STEPS, EVERY, DECAY = 60, 10, 20
CONTEXT = 64
transformers.logging.set_verbosity_error()


def wsm(*args, timeout=300, check=True):
    r = subprocess.run([WSM_BIN, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"wsm {' '.join(map(str, args))} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r


def train_text():
    """Text to train on and held-out text to score (the repository's own prose)."""
    train = "\n".join((SOURCE / f"docs/{n}.md").read_text() for n in ("method-guide", "schedules", "design"))
    return train, (SOURCE / "docs/sharded.md").read_text()


def make_tokenizer(text, out):
    import tokenizers

    tok = tokenizers.ByteLevelBPETokenizer()
    tok.train_from_iterator([text], vocab_size=384, min_frequency=2, special_tokens=["<|endoftext|>"])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok._tokenizer, eos_token="<|endoftext|>",
                                                bos_token="<|endoftext|>", unk_token="<|endoftext|>",
                                                pad_token="<|endoftext|>")
    fast.save_pretrained(out)
    return fast


class Blocks(torch.utils.data.Dataset):
    def __init__(self, ids):
        n = (len(ids) - 1) // CONTEXT
        self.blocks = [torch.tensor(ids[i * CONTEXT:(i + 1) * CONTEXT]) for i in range(n)]

    def __len__(self):
        return len(self.blocks)

    def __getitem__(self, i):
        return {"input_ids": self.blocks[i], "labels": self.blocks[i]}


def train(out, tokenizer, dataset, schedule="constant_with_warmup", resume=None, callbacks=(), **extra):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=CONTEXT, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = transformers.GPT2LMHeadModel(config)
    args = transformers.TrainingArguments(
        output_dir=str(out), max_steps=STEPS, learning_rate=3e-3, warmup_steps=5, lr_scheduler_type=schedule,
        per_device_train_batch_size=8, save_steps=EVERY, save_strategy="steps", logging_steps=EVERY,
        report_to=[], use_cpu=True, seed=0, data_seed=0, include_num_input_tokens_seen=True,
        dataloader_num_workers=0, disable_tqdm=True, **extra)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                   data_collator=transformers.default_data_collator,
                                   callbacks=list(callbacks))
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return trainer


def from_pretrained(path, test):
    """The model, checked: no missing or unexpected keys, parameters in config.json's dtype."""
    model, info = transformers.AutoModelForCausalLM.from_pretrained(str(path), output_loading_info=True)
    test.assertEqual((sorted(info["missing_keys"]), sorted(info["unexpected_keys"])), ([], []), path)
    config = json.loads((pathlib.Path(path) / "config.json").read_text())
    named = config.get("dtype", config.get("torch_dtype"))
    test.assertIsNotNone(named, f"{path}/config.json names no dtype")
    dtypes = {p.dtype for p in model.parameters()}
    test.assertEqual(dtypes, {getattr(torch, named)}, path)
    return model


def merged_reference(paths, weights):
    """float64 weighted sum of the checkpoints' tensors (independent of wsm: safetensors via numpy)."""
    total = {}
    for p, w in zip(paths, weights):
        for name, a in wsm_client.load_state_dict(p, framework="numpy").items():
            total[name] = total.get(name, 0) + w * a.astype(np.float64)
    return total


class HuggingFaceTrainer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.t0 = time.monotonic()
        cls.tmp = tempfile.TemporaryDirectory(prefix="wsm-hf-")
        cls.dir = pathlib.Path(cls.tmp.name)
        text, heldout = train_text()
        cls.heldout = cls.dir / "heldout.txt"
        cls.heldout.write_text(heldout)
        cls.tokenizer = make_tokenizer(text, cls.dir / "tokenizer")
        cls.dataset = Blocks(cls.tokenizer(text)["input_ids"])
        cls.eval_cmd = (f"{shlex.quote(sys.executable)} {shlex.quote(str(HF_EVAL))} {{path}} "
                        f"--text {shlex.quote(str(cls.heldout))} --max-tokens 1024")
        # 1. The constant-LR run and 2. the WSD baseline resumed from checkpoint-(S-D).
        cls.run_dir = cls.dir / "run"
        train(cls.run_dir, cls.tokenizer, cls.dataset)
        cls.wsd = cls.dir / "wsd"
        train(cls.wsd, cls.tokenizer, cls.dataset, schedule="warmup_stable_decay",
              resume=cls.run_dir / f"checkpoint-{STEPS - DECAY}",
              lr_scheduler_kwargs={"num_decay_steps": DECAY, "num_stable_steps": STEPS - DECAY - 5})
        print(f"\n[hf] trained the run and its WSD baseline in {time.monotonic() - cls.t0:.0f} s", file=sys.stderr)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()
        print(f"[hf] end to end {time.monotonic() - cls.t0:.0f} s", file=sys.stderr)

    def test_wsd_baseline_decays_from_the_resumed_checkpoint(self):
        state = json.loads((self.wsd / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
        lrs = {e["step"]: e["learning_rate"] for e in state["log_history"] if "learning_rate" in e}
        run_lrs = {e["step"]: e["learning_rate"] for e in json.loads(
            (self.run_dir / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())["log_history"] if "learning_rate" in e}
        self.assertAlmostEqual(lrs[STEPS - DECAY], run_lrs[STEPS - DECAY])  # the resumed history
        self.assertLess(lrs[STEPS - 10], 0.75 * run_lrs[STEPS - 10])            # decaying after S - D
        self.assertEqual(sorted(p.name for p in self.wsd.glob("checkpoint-*")),
                         [f"checkpoint-{s}" for s in range(STEPS - DECAY + EVERY, STEPS + 1, EVERY)])

    def test_sweep_with_baseline(self):
        out = self.dir / "sweep"
        ckpts = sorted(glob.glob(str(self.run_dir / "checkpoint-*")))
        r = wsm("compare", "sweep", "--shapes", "linear,1-sqrt", "--windows", "20", "--eval-cmd", self.eval_cmd,
                "--score-key", "loss", "--noise-key", "stderr", "--jobs", "2",
                "--baseline", f"wsd={self.wsd / f'checkpoint-{STEPS}'}", "--out", out, *ckpts, timeout=600)
        results = json.loads((out / "results.json").read_text())
        rows = results["results"]
        methods = sorted(row["method"] for row in rows)
        self.assertEqual(methods, ["baseline", "raw", "wsm", "wsm"], rows)
        for row in rows:
            self.assertIsNotNone(row["score"], row)
            self.assertTrue(math.isfinite(row["score"]) and row["score"] > 0, row)
            self.assertIn("noise", row)
            from_pretrained(row["path"], self)
        baseline = next(row for row in rows if row["method"] == "baseline")
        self.assertEqual(baseline["name"], "wsd")
        # The baseline's score is the eval command's on the checkpoint itself.
        direct = json.loads(subprocess.run(shlex.split(self.eval_cmd.replace("{path}", shlex.quote(
            str(self.wsd / f"checkpoint-{STEPS}")))), capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        self.assertAlmostEqual(baseline["score"], direct["loss"], places=5)
        # A merge is the weighted mean of the checkpoints it names (float64 reference).
        merge = next(row for row in rows if row["method"] == "wsm")
        paths = [self.run_dir / f"checkpoint-{s}" for s in merge["sources"]]
        ref = merged_reference(paths, merge["weights"])
        got = wsm_client.load_state_dict(merge["path"], framework="numpy")
        for name, a in got.items():
            np.testing.assert_allclose(a, ref[name], rtol=0, atol=1e-6 * max(1.0, np.abs(ref[name]).max()))
        # Ranked: the scored models, best first; the report compares each merge with the baseline.
        ranked = results["summary"]
        self.assertEqual(len(ranked), len(rows))
        scores = [e["score"] for e in ranked]
        self.assertEqual(scores, sorted(scores))
        comparisons = results["baseline_comparisons"]
        self.assertEqual(len(comparisons), 2)
        for c in comparisons:
            self.assertEqual(c["baseline"], "wsd")
            self.assertIn(c["verdict"], ("better", "worse", "equal within noise"))
        report = (out / "report.md").read_text()
        self.assertIn("Against the baselines", report)
        self.assertIn("wsd", report)

    def test_bf16_merge_loads_as_bf16(self):
        out = self.dir / "bf16"
        wsm("merge", "--shape", "1-sqrt", "--dtype", "bf16", "--out", out,
            *sorted(glob.glob(str(self.run_dir / "checkpoint-*")))[-3:])
        model = from_pretrained(out, self)
        self.assertEqual(next(model.parameters()).dtype, torch.bfloat16)

    def test_streamed_run_through_serve(self):
        out = self.dir / "served"
        # The callback sends the model's config, not its tokenizer: the eval command is told where it is.
        eval_cmd = self.eval_cmd + " --tokenizer " + shlex.quote(str(self.dir / "tokenizer"))
        daemon = Daemon(emulate="1-sqrt@20", every=20, out=str(out),
                        extra=("--format", "hf", "--eval-cmd", eval_cmd, "--score-key", "loss"))
        try:
            callback = WsmCallback(daemon.endpoint, run_id="gpt", policy="wait")
            streamed = self.dir / "streamed"
            train(streamed, self.tokenizer, self.dataset, callbacks=[callback])
            self.assertEqual(callback.sent_steps, list(range(EVERY, STEPS + 1, EVERY)))
            self.assertEqual((callback.report["acked"], callback.report["errors"]), (STEPS // EVERY, []))
            index = out / "index.json"

            def all_scored():
                doc = json.loads(index.read_text()) if index.exists() else {}
                listed = doc.get("outputs", []) + doc.get("raw", [])
                # index.json keeps each score under the record's "eval" (docs/readout.md); the raw
                # checkpoint of the newest output step must be listed too (an older raw one still
                # waiting when evaluation falls behind is dropped, by design: docs/readout.md).
                raw_steps = {r["step"] for r in doc.get("raw", [])}
                newest = max((o["step"] for o in doc.get("outputs", [])), default=None)
                return (newest in raw_steps and
                        all("score" in o.get("eval", {}) or "error" in o.get("eval", {}) for o in listed))

            self.assertTrue(wait_until(all_scored, 600, interval_s=1), "".join(daemon.log))
        finally:
            daemon.stop()
        doc = json.loads(index.read_text())
        records = doc["outputs"]
        self.assertTrue(records)
        for raw in doc["raw"]:  # raw checkpoints scored in the outputs' form (a model directory)
            self.assertNotIn("error", raw["eval"], raw)
            self.assertTrue(math.isfinite(raw["eval"]["score"]), raw)
        for rec in records:
            self.assertNotIn("error", rec.get("eval", {}), rec)
            self.assertTrue(math.isfinite(rec["eval"]["score"]), rec)
            path = pathlib.Path(rec["path"])
            path = path if path.is_absolute() else out / path
            from_pretrained(path, self)
            # The merge of the checkpoints the callback sent: the run's own checkpoint-N files.
            ref = merged_reference([streamed / f"checkpoint-{s}" for s in rec["sources"]], rec["weights"])
            for name, a in wsm_client.load_state_dict(path, framework="numpy").items():
                np.testing.assert_allclose(a, ref[name], rtol=0, atol=1e-6 * max(1.0, np.abs(ref[name]).max()))
            meta = wsm_client.read_metadata(path)
            self.assertEqual(int(meta["wsm.step"]), rec["step"])
        curves = json.loads(wsm("report", out, "--json").stdout)["curves"]
        raw = [c for c in curves if c["label"] == "raw"]
        self.assertEqual(len(raw), 1, curves)
        self.assertEqual((raw[0]["scored"], raw[0]["failed"]), (len(doc["raw"]), 0), curves)
        self.assertIn(" raw ", wsm("report", out).stdout)


class ShardedRuns(unittest.TestCase):
    """Sharded jobs (no Trainer run needed): FSDP2 ranks through the callback, and a sharded run's
    step directory converted to a Hugging Face directory."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="wsm-hf-sharded-")
        self.dir = pathlib.Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def test_fsdp2_ranks_send_their_local_shards(self):
        """torchrun, 2 CPU processes: WsmCallback on a fully_shard-ed GPT-2 sends each rank's DTensor
        shards; the daemon's output is the float64 merge of the whole models."""
        sys.path.insert(0, str(pathlib.Path(__file__).parent))
        from fsdp_ranks import model_at

        out = self.dir / "fsdp"
        daemon = Daemon(emulate="linear:20", every=10, out=str(out))
        try:
            port = free_port()
            r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                "--master_addr", "127.0.0.1", "--master_port", str(port),
                                str(pathlib.Path(__file__).parent / "fsdp_ranks.py"), daemon.endpoint,
                                str(self.dir / "fsdp-trainer")], capture_output=True, text=True, timeout=600)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("rank 1: sent [10, 20, 30]", r.stdout)
        finally:
            daemon.stop()
        records = json.loads((out / "index.json").read_text())["outputs"]
        self.assertTrue(records and records[-1]["step"] == 30, records)
        for rec in records:
            path = pathlib.Path(rec["path"])
            path = path if path.is_absolute() else out / path
            got = wsm_client.load_state_dict(path, framework="numpy")
            wholes = {s: {n: t.double().numpy() for n, t in model_at(s).state_dict().items()} for s in rec["sources"]}
            names = set(wholes[rec["sources"][0]]) - {"lm_head.weight"}  # tied to the embedding: sent once
            self.assertEqual(set(got), names)
            for name in names:
                ref = sum(w * wholes[s][name] for s, w in zip(rec["sources"], rec["weights"]))
                np.testing.assert_allclose(got[name], ref, rtol=0, atol=1e-6)

    def test_sharded_run_converts_to_a_loadable_directory(self):
        config = transformers.GPT2Config(vocab_size=97, n_positions=CONTEXT, n_embd=32, n_layer=2, n_head=2)
        torch.manual_seed(1)
        models = [transformers.GPT2LMHeadModel(config) for _ in range(3)]
        out = self.dir / "sharded"
        daemons = [Daemon(emulate="linear:20", every=20, out=str(out), extra=("--index", f"index-{n}.json"))
                   for n in range(2)]
        try:
            clients = [wsm_client.MergerClient(daemons[r].endpoint, run_id="tp", rank=r, world_size=2,
                                               local_world_size=1, policy="wait",
                                               metadata={"hf.config": config.to_json_string()}) for r in range(2)]
            for i, m in enumerate(models):
                sd = wsm_client.hf.weights_to_send(m.state_dict())
                for r, c in enumerate(clients):
                    tensors, slices = {}, {}
                    for name, t in sd.items():
                        if t.dim() == 2:  # rows split between the ranks (uneven when odd)
                            half = (t.shape[0] + 1) // 2
                            lo, hi = (0, half) if r == 0 else (half, t.shape[0])
                            tensors[name], slices[name] = t[lo:hi], (tuple(t.shape), (lo, 0))
                        else:
                            tensors[name], slices[name] = t, wsm_client.REPLICATED
                    c.send_checkpoint(10 * i, 1000 * i, 1e-3, tensors, slices=slices)
            for c in clients:
                self.assertTrue(c.flush(timeout_s=120))
                self.assertEqual(c.close()["errors"], [])
        finally:
            for d in daemons:
                d.stop()
        records = json.loads((out / "index-0.json").read_text())["outputs"]
        self.assertEqual([r["step"] for r in records], [20])
        step_dir = pathlib.Path(records[0]["path"])
        step_dir = step_dir if step_dir.is_absolute() else out / step_dir
        hf_dir = self.dir / "sharded-hf"
        wsm("convert", step_dir, hf_dir, "--shard-size", "50KB")
        self.assertGreater(len(list(hf_dir.glob("model-*.safetensors"))), 1)
        model = from_pretrained(hf_dir, self)
        parts = wsm_client.load_state_dict(step_dir, framework="numpy")
        weights = dict(zip(records[0]["sources"], records[0]["weights"]))
        for name, p in model.state_dict().items():
            if name == "lm_head.weight":
                name = "transformer.wte.weight"  # tied: from_pretrained ties it to the embedding
            ref = sum(w * models[s // 10].state_dict()[name].double().numpy() for s, w in weights.items())
            np.testing.assert_allclose(p.numpy(), ref, rtol=0, atol=1e-6)
            np.testing.assert_array_equal(parts[name], p.numpy())


class EvalExample(unittest.TestCase):
    def test_untrained_model_scores_log_vocab(self):
        """hf_eval.py on a freshly initialised GPT-2 (near-uniform predictions): its loss is about
        ln(vocabulary size), the last number on stdout, with a standard error."""
        with tempfile.TemporaryDirectory(prefix="wsm-hf-eval-") as tmp:
            text, heldout = train_text()
            tokenizer = make_tokenizer(text, f"{tmp}/m")
            torch.manual_seed(0)
            transformers.GPT2LMHeadModel(transformers.GPT2Config(
                vocab_size=len(tokenizer), n_positions=CONTEXT, n_embd=32, n_layer=2, n_head=2)).save_pretrained(f"{tmp}/m")
            pathlib.Path(f"{tmp}/heldout.txt").write_text(heldout)
            r = subprocess.run([sys.executable, str(HF_EVAL), f"{tmp}/m", "--text", f"{tmp}/heldout.txt",
                                "--max-tokens", "1024"], capture_output=True, text=True, timeout=600)
            self.assertEqual(r.returncode, 0, r.stderr)
            last = r.stdout.strip().splitlines()[-1]
            result = json.loads(last)
            self.assertEqual(float(last.rstrip("}").split(":")[-1]), result["loss"])  # the last number
            self.assertEqual((result["tokens"], result["blocks"]), (1023, 16))
            self.assertLess(abs(result["loss"] - math.log(len(tokenizer))), 0.1)
            self.assertTrue(0 < result["stderr"] < 0.1, result)
            bad = subprocess.run([sys.executable, str(HF_EVAL), f"{tmp}/absent", "--text", f"{tmp}/heldout.txt"],
                                 capture_output=True, text=True, timeout=600)
            self.assertEqual(bad.returncode, 1)
            self.assertIn("hf_eval:", bad.stderr)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    unittest.main()
