"""Hugging Face Trainer: stream checkpoints to `wsm serve` from a callback (docs/python-client.md,
"Hugging Face Trainer"). Needs the [hf] extra: `pip install './protocol/python[hf]'`.

    from wsm_client.hf import WsmCallback
    trainer = transformers.Trainer(..., callbacks=[WsmCallback("tcp://127.0.0.1:5555", run_id="gpt")])

Each save (or, with every_steps=N, every N optimizer steps) sends the model's weights with the step,
`state.num_input_tokens_seen` (TrainingArguments(include_num_input_tokens_seen=True)) and the
scheduler's current learning rate. The model's config goes with every Hello as the `hf.config`
metadata, so `wsm serve --format hf` writes config.json without a template.

Ranks: parameters that are DTensors (FSDP2's fully_shard, tensor parallel; FSDP1 with
SHARDED_STATE_DICT) are sent by every rank, each its local shards (sharded.py); tensors that are
not DTensors then go from process 0 alone. Without DTensors (one process, DDP: every rank holds the
whole model) process 0 sends the whole model and the other ranks send nothing.

Training never waits for the merger beyond one host copy of the weights (MergerClient's queue and
background sender), and never fails because of it: the merger being away, slow or refusing a
checkpoint is the client's outage policy (default drop-oldest) and is logged, never raised.
"""
import logging
import os

import transformers

from .delivery import Policy
from .sharded import MergerClient, _is_dtensor

log = logging.getLogger("wsm_client")


def _unwrapped(model):
    """The model under DDP/DataParallel/compile wrappers (the one with the config)."""
    seen = 0
    while model is not None and not hasattr(model, "config") and seen < 8:
        model = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        seen += 1
    return model


def _storage_key(t):
    """Identity of a tensor's memory: tied weights (GPT-2's lm_head and wte) share it."""
    local = t.to_local() if _is_dtensor(t) else t
    if local.numel() == 0:
        return None
    return local.data_ptr(), tuple(local.shape), tuple(local.stride()), local.dtype


def weights_to_send(state_dict):
    """The state dict without aliases: a tensor that shares its memory with an earlier entry (tied
    embeddings) is left out, as save_pretrained leaves it out; from_pretrained ties it again."""
    out, seen = {}, set()
    for name, t in state_dict.items():
        key = _storage_key(t)
        if key is not None and key in seen:
            continue
        if key is not None:
            seen.add(key)
        out[name] = t
    return out


class WsmCallback(transformers.TrainerCallback):
    """Streams the Trainer's weights to `wsm serve`.

    endpoint, run_id: the daemon and the run (default: the basename of TrainingArguments.output_dir).
    every_steps: send every N optimizer steps; default None sends at each save (save_steps), the
        weights of checkpoint-N, with the same step.
    metadata: extra str -> str metadata; "hf.config" (the model's config.json text) is added.
    client_options: MergerClient's (policy="drop-oldest", queue_bytes, reconnect_timeout_ms, ...).
    close_timeout_s: how long on_train_end waits for the queued checkpoints (default: the client's).
    """

    def __init__(self, endpoint="tcp://127.0.0.1:5555", run_id=None, every_steps=None, metadata=None,
                 close_timeout_s=None, **client_options):
        if every_steps is not None and int(every_steps) < 1:
            raise ValueError(f"every_steps must be >= 1 (got {every_steps})")
        Policy.parse(client_options.get("policy", "drop-oldest"))  # a bad policy fails here, before training
        self.endpoint, self.run_id = endpoint, run_id
        self.every_steps = None if every_steps is None else int(every_steps)
        self.metadata = dict(metadata or {})
        self.close_timeout_s = close_timeout_s
        self.client_options = client_options
        self.client = None
        self.report = None          # close()'s report once training ended
        self.sent_steps = []        # the steps queued to the merger by this rank
        self._last_step = None
        self._warned_tokens = False

    # ---- Trainer events --------------------------------------------------------------------------
    def on_step_end(self, args, state, control, model=None, lr_scheduler=None, optimizer=None, **kwargs):
        if self.every_steps is not None and state.global_step % self.every_steps == 0:
            self._send(args, state, model, lr_scheduler, optimizer)

    def on_save(self, args, state, control, model=None, lr_scheduler=None, optimizer=None, **kwargs):
        if self.every_steps is None:
            self._send(args, state, model, lr_scheduler, optimizer)

    def on_train_end(self, args, state, control, **kwargs):
        if self.client is None:
            return
        try:
            self.report = self.client.close(timeout_s=self.close_timeout_s)
        except Exception as e:  # noqa: BLE001 - the end of training must not fail because of the merger
            log.warning("wsm: closing the merger client failed: %r", e)
            self.report = {"errors": [repr(e)]}
        else:
            log.info("wsm: merger client closed: %d acknowledged, %d failed, %d dropped",
                     self.report["acked"], self.report["failed"], self.report["dropped"])
        self.client = None

    # ---- sending ---------------------------------------------------------------------------------
    def _send(self, args, state, model, lr_scheduler, optimizer):
        step = int(state.global_step)
        if model is None or step == self._last_step:
            return
        self._last_step = step
        try:
            tensors, client = self._local_weights(args, model)
            if client is None:
                return
            client.send_checkpoint(step, self._tokens(state), _learning_rate(lr_scheduler, optimizer), tensors)
            self.sent_steps.append(step)
        except Exception as e:  # noqa: BLE001 - a merger problem must never stop training
            log.warning("wsm: step %d not sent to the merger at %s: %s", step, self.endpoint, e)

    def _local_weights(self, args, model):
        """(tensors, client) of what this rank sends; client None when it sends nothing."""
        weights = weights_to_send(model.state_dict())
        sharded = any(_is_dtensor(t) for t in weights.values())
        world, rank = int(getattr(args, "world_size", 1)), int(getattr(args, "process_index", 0))
        if not sharded and rank != 0:
            return None, None  # DDP: process 0 holds the same whole model
        if sharded:
            # A tensor every rank holds whole (a buffer) goes from process 0 alone.
            weights = {n: t for n, t in weights.items() if _is_dtensor(t) or rank == 0}
        client = self._client(args, model, sharded, rank, world)
        return weights, client

    def _client(self, args, model, sharded, rank, world):
        if self.client is None:
            metadata = dict(self.metadata)
            config = getattr(_unwrapped(model), "config", None)
            if config is not None and "hf.config" not in metadata:
                metadata["hf.config"] = config.to_json_string()
            run_id = self.run_id or os.path.basename(os.path.normpath(args.output_dir)) or "run"
            group = {}
            if sharded:
                local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
                group = {"rank": rank, "world_size": world, "local_world_size": local}
            else:
                group = {"rank": 0, "world_size": 1, "local_world_size": 1}
            self.client = MergerClient(self.endpoint, run_id, metadata=metadata, **group, **self.client_options)
        return self.client

    def _tokens(self, state):
        tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        if tokens == 0 and not self._warned_tokens:
            self._warned_tokens = True
            log.warning("wsm: tokens seen are 0 (TrainingArguments(include_num_input_tokens_seen=True) counts "
                        "them); token windows (50Mt) need them")
        return tokens


def _learning_rate(lr_scheduler, optimizer):
    """The learning rate of the step just taken: the scheduler's last, else the optimizer's first group."""
    try:
        if lr_scheduler is not None:
            return float(lr_scheduler.get_last_lr()[0])
        if optimizer is not None:
            return float(optimizer.param_groups[0]["lr"])
    except Exception:  # noqa: BLE001 - schedulers without get_last_lr (e.g. DeepSpeed's dummy)
        pass
    return 0.0


__all__ = ["WsmCallback", "weights_to_send"]
