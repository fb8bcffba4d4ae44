"""`python -m wsm_client.convert ckpt.pt [out.safetensors] [--key model]`: a torch.save file (.pt,
pytorch_model.bin, or a pytorch_model.bin.index.json set) to safetensors, which wsm reads in place
(torch_files.py does the work; this module is only the command, so that the package's import does
not load it before `-m` runs it)."""
import argparse
import sys

from .torch_files import convert_torch_checkpoint


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m wsm_client.convert",
                                 description="Convert a torch.save file (.pt, pytorch_model.bin) to safetensors")
    ap.add_argument("src")
    ap.add_argument("dst", nargs="?")
    ap.add_argument("--key", help="top-level entry holding the state dict (default: found by itself)")
    args = ap.parse_args(argv)
    try:
        out = convert_torch_checkpoint(args.src, args.dst, args.key)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
