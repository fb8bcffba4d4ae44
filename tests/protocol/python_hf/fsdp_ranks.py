"""One rank of test_hf_trainer's FSDP2 check, under torchrun (2 CPU processes, gloo): a tiny GPT-2
sharded with fully_shard, its DTensor weights changed in place per step as training would, and
wsm_client.hf.WsmCallback called at each save the way the Trainer calls it (real TrainingArguments,
TrainerState and TrainerControl). Usage: fsdp_ranks.py ENDPOINT OUTPUT_DIR."""
import sys

import torch
import torch.distributed as dist
import transformers
from torch.distributed.device_mesh import init_device_mesh

from wsm_client.hf import WsmCallback

STEPS = (10, 20, 30)


def model_at(step):
    """The whole model at a step: seed-0 init plus a step-dependent change (the parent rebuilds it)."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=97, n_positions=16, n_embd=32, n_layer=2, n_head=2)
    model = transformers.GPT2LMHeadModel(config)
    bump(model, step)
    return model


def bump(model, step):
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.add_(0.001 * step * (i + 1))


def main(endpoint, out):
    args = transformers.TrainingArguments(output_dir=out, use_cpu=True, report_to=[], max_steps=STEPS[-1])
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    from torch.distributed.fsdp import fully_shard

    model = model_at(0)
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    for block in model.transformer.h:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    callback = WsmCallback(endpoint, run_id="fsdp", policy="wait")
    state, control = transformers.TrainerState(), transformers.TrainerControl()
    previous = 0
    for step in STEPS:
        bump(model, step - previous)  # in place on the DTensors, as an optimizer step is
        previous = step
        state.global_step, state.num_input_tokens_seen = step, 1000 * step
        callback.on_save(args, state, control, model=model)
    callback.on_train_end(args, state, control)
    assert callback.report["errors"] == [], callback.report
    assert callback.report["acked"] == len(STEPS), callback.report
    print(f"rank {dist.get_rank()}: sent {callback.sent_steps}", flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
