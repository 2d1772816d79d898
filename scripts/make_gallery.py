"""Build a unit gallery with :func:`dreamviz.gallery.build`, on one process or many.

    python scripts/make_gallery.py --layer blocks.3 --layer blocks.8 --channels 0-15 --out gal
    torchrun --nproc_per_node=4 scripts/make_gallery.py --layer blocks.8 --out gal

Under torchrun (WORLD_SIZE > 1) the processes join one group (nccl on CUDA GPUs, each rank on
``cuda:LOCAL_RANK``; gloo on the CPU), render their share of the batches, and rank 0 writes
manifest.json and index.html. Across nodes use torchrun's usual flags (--nnodes, --rdzv-*) and
an output folder on a filesystem that every node shares. The output equals a one-process run.
Options are those of ``dreamviz gallery`` (see --help).
"""

from __future__ import annotations

import argparse
import sys

from dreamviz import gallery
from dreamviz.commands.gallery import add_arguments, build_kwargs
from dreamviz.errors import DreamvizError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        with gallery.distributed(args.device) as device:
            result = gallery.build(args.model, device=device, **build_kwargs(args))
    except DreamvizError as e:
        if args.debug:
            raise
        print(f"make_gallery: error: {e}", file=sys.stderr)
        return e.exit_code
    for path in [*result.written, result.manifest, result.index]:
        if path is not None:
            print(path, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
