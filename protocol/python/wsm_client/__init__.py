"""wsm_client: stream checkpoints from a training loop to the wsm merger (`wsm serve`), and read
what wsm writes.

    from wsm_client import MergerClient
    merger = MergerClient("tcp://127.0.0.1:5555", run_id="gpt")
    merger.send_checkpoint(step, tokens, lr, model.state_dict())   # in the loop; returns quickly

See docs/python-client.md (and docs/sharded.md for sharded jobs); the wire format is docs/protocol.md.
"""
from .client import merge_now, message_to_dict, status
from .torch_files import convert_torch_checkpoint
from .delivery import MergerError, Policy
from .files import CheckpointFileError, load_checkpoint, load_state_dict, read_metadata, read_provenance
from .outputs import OutputWatcher, wait_for_output
from .sharded import REPLICATED, MergerClient

__all__ = ["MergerClient", "MergerError", "Policy", "REPLICATED", "status", "merge_now", "message_to_dict",
           "load_state_dict", "load_checkpoint", "read_metadata", "read_provenance", "CheckpointFileError", "convert_torch_checkpoint", "wait_for_output",
           "OutputWatcher"]
__version__ = "0.2.0"
