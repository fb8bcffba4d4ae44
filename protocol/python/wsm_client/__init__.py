"""wsm_client: stream checkpoints from a training loop to the wsm merger (`wsm serve`).

    from wsm_client import MergerClient
    merger = MergerClient("tcp://127.0.0.1:5555", run_id="gpt")
    merger.send_checkpoint(step, tokens, lr, model.state_dict())   # in the loop; returns quickly

See protocol/python/README.md; the wire format is docs/protocol.md.
"""
from .client import MergerError, merge_now, status
from .sharded import REPLICATED, MergerClient

__all__ = ["MergerClient", "MergerError", "status", "merge_now", "REPLICATED"]
__version__ = "0.1.0"
