"""python3 -m dinov3.distributed embed: `dinov3 embed` on a Dask cluster (see dinov3.distributed)."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def _parser() -> argparse.ArgumentParser:
    from dinov3 import DEFAULT_MODEL
    from dinov3.distributed import DEFAULT_PARTITION_SIZE

    parser = argparse.ArgumentParser(prog="python3 -m dinov3.distributed",
                                     description="Embed image collections on a Dask cluster with the dinov3 engine.")
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("embed", help="embed files, folders or @list.txt into one .npy with an index of paths",
                       description="Embed image files, folders (searched recursively) and @list.txt into OUT.npy "
                                   "and OUT.index.txt, in the same row order as `dinov3 embed`. Partitions are "
                                   "written to OUT.npy.dask/ as they finish; --resume reuses them.")
    e.add_argument("inputs", nargs="+", help="image files, folders or @list.txt")
    e.add_argument("-o", "--output", required=True, help="output .npy (the index goes beside it)")
    e.add_argument("--model", default=DEFAULT_MODEL, help="model folder, checkpoint or hub id the workers can read")
    e.add_argument("--scheduler", help="a Dask scheduler address, tcp://HOST:8786 (default: a local cluster)")
    e.add_argument("--local-workers", type=int, help="worker processes of the local cluster (default: from the cores)")
    e.add_argument("--backend", default="cpu", help="compute backend (cpu, reference)")
    e.add_argument("--precision", default="fp32", help="fp32, bf16 or int8")
    e.add_argument("--int8-plan", help="with --precision int8: a plan file from `dinov3 calibrate` the workers can read")
    e.add_argument("--threads", type=int, help="engine threads per worker process (default: the machine's cores "
                                               "over its worker threads)")
    e.add_argument("--batch-size", type=int, default=8, help="images per forward (default 8)")
    e.add_argument("--partition-size", type=int, default=DEFAULT_PARTITION_SIZE,
                   help=f"the most images per task and shard; partitions are cut equal (default {DEFAULT_PARTITION_SIZE})")
    e.add_argument("--pool", default="default", help="pooled output: avg, token or default")
    e.add_argument("--normalize", action="store_true", help="L2-normalise each output vector")
    e.add_argument("--features", action="store_true", help="write all tokens [N, T, D] instead of pooled [N, D]")
    e.add_argument("--decode-threads", type=int, default=1, help="decoding threads per partition (default 1)")
    e.add_argument("--retries", type=int, default=2, help="extra tries of a failed partition (default 2)")
    e.add_argument("--resume", action="store_true", help="reuse the finished partitions of an interrupted run")
    e.add_argument("--overwrite", action="store_true", help="replace an existing output (and any interrupted run)")
    e.add_argument("--quiet", "-q", action="store_true", help="no progress or summary")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    import distributed

    from dinov3.distributed import EmbedFailed, embed

    client = None
    try:
        if args.scheduler:
            client = distributed.Client(args.scheduler, timeout="30s")
        summary = embed(args.inputs, args.model, args.output, client=client, batch_size=args.batch_size,
                        partition_size=args.partition_size, backend=args.backend, precision=args.precision,
                        int8_plan=args.int8_plan,
                        threads=args.threads, pool=args.pool, normalize=args.normalize, features=args.features,
                        decode_threads=args.decode_threads, retries=args.retries, resume=args.resume,
                        overwrite=args.overwrite, quiet=args.quiet, local_workers=args.local_workers)
    except EmbedFailed as e:
        print(f"dinov3.distributed: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        from dinov3.distributed import work_dir_for
        print(f"dinov3.distributed: interrupted; finished partitions are kept in {work_dir_for(args.output)} "
              "(--resume continues)", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError, MemoryError) as e:
        print(f"dinov3.distributed: error: {e}", file=sys.stderr)
        return 1
    finally:
        if client is not None:
            client.close()
    if not args.quiet:
        print(f"dinov3.distributed: {summary.rows} rows in {summary.output} ({summary.computed} partitions computed, "
              f"{summary.reused} reused, {len(summary.skipped)} inputs skipped) in {summary.seconds:.1f}s, "
              f"{(summary.rows + len(summary.skipped)) / max(summary.seconds, 1e-9):.2f} img/s", file=sys.stderr)
        for path, reason in summary.skipped:
            print(f"  skipped: {reason}", file=sys.stderr)
        print(f"dinov3.distributed: index {summary.index}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
