"""Embedding an image collection on a Dask cluster, with the dinov3 engine inside each worker.

    from dinov3.distributed import embed
    summary = embed(["photos/", "@more.txt"], "timm/vit_small_patch16_dinov3.lvd1689m", "out.npy",
                    client=None)          # a dask.distributed.Client, or None for a local cluster

or from a shell (`python3 -m dinov3.distributed embed --help`):

    python3 -m dinov3.distributed embed --scheduler tcp://HOST:8786 photos/ -o out.npy

The inputs are listed once, on the client, exactly as `dinov3 embed` lists them (dinov3.expand_inputs), and
cut into partitions of `partition_size` images. Each worker process loads the model once and keeps it; it
embeds a partition with the native engine and writes it at once to a shard in the work folder beside the
output (OUT.npy.dask/part-NNNNNN.npz: rows, the paths they belong to, the skipped files with reasons). The
client then checks every shard against its partition's inputs and publishes OUT.npy and OUT.index.txt
together, in the same row order as `dinov3 embed`, the same way (both or neither); nothing existing is
replaced without overwrite=True. The work folder must be on storage the client and every worker share.

Faults: a worker that dies has its partition recomputed elsewhere (Dask reschedules it; shards are written
whole or not at all, and a partition recomputed gives the same shard). A client that dies leaves its finished
shards: the same call with resume=True reuses them. An unreadable image is skipped and reported, as by
`dinov3 embed`. A partition that fails for another reason is retried `retries` times, then reported; the
run then raises EmbedFailed without publishing anything, keeping the finished shards for a resume.

Threads: the engine threads of each worker process times the threads of all worker processes on its
machine never exceed the machine's cores (threads=None works this out per machine from the cluster's
workers; give threads to fix it).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import stat
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

import dinov3
from dinov3 import _dinov3

try:
    import distributed as _dask_distributed
except ImportError as e:  # pragma: no cover - only without Debian's python3-distributed
    raise ImportError("dinov3.distributed needs Dask distributed (Debian: apt-get install python3-distributed)") from e

__all__ = ["embed", "EmbedSummary", "EmbedFailed", "DEFAULT_PARTITION_SIZE", "work_dir_for", "local_cluster_size",
           "local_cluster"]

DEFAULT_PARTITION_SIZE = 256
_SHARD_FORMAT = 1


class EmbedFailed(RuntimeError):
    """Partitions failed after their retries; nothing was published. `failures`: (partition, message)."""

    def __init__(self, message: str, failures: List[Tuple[int, str]], work_dir: str) -> None:
        super().__init__(message)
        self.failures = failures
        self.work_dir = work_dir


@dataclass(frozen=True)
class EmbedSummary:
    """What embed() returns: the files written, the row count and shape, the skipped inputs with their
    reasons, the partitions computed in this run and those reused from an interrupted one, and timings
    (seconds end to end, and the sum over partitions of the workers' time)."""

    output: str
    index: str
    rows: int
    row_shape: Tuple[int, ...]
    skipped: List[Tuple[str, str]]
    partitions: int
    computed: int
    reused: int
    seconds: float
    worker_seconds: float = 0.0
    dashboard: Optional[str] = None
    engine_threads: Dict[str, int] = field(default_factory=dict)


def work_dir_for(output: str) -> str:
    """The work folder of an output: its shards and the run's description (OUT.npy.dask)."""
    return os.fspath(output) + ".dask"


def local_cluster_size(cores: Optional[int] = None) -> Tuple[int, int]:
    """(worker processes, engine threads each) of the local cluster made when no client is given: one
    single-threaded worker per core up to 4 cores, then workers of 4 engine threads (each worker holds its
    own copy of the weights, so memory grows with the worker count)."""
    cores = cores or _cores()
    if cores <= 4:
        return cores, 1
    return cores // 4, 4


def local_cluster(n_workers: int) -> Any:
    """The dask.distributed.LocalCluster embed() starts when given no client: `n_workers` single-threaded
    worker processes, the dashboard on a free port (served only when bokeh is installed), and the workers'
    statistical profiler off (it samples every thread's Python stack every 10 ms; with the engine in the
    task thread that cost 5-10% of a worker's time here: 500 images on 2 workers x 1 engine thread,
    23.1-25.2 s with it, 21.5-22.2 s without)."""
    import dask

    with dask.config.set({"distributed.worker.profile.enabled": False}):
        return _dask_distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                              dashboard_address=":0", silence_logs=40)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# ---- shards ----------------------------------------------------------------------------------------------

def _join(items: Sequence[bytes]) -> np.ndarray:
    """Byte strings as one uint8 array, NUL-separated (NUL is the one byte no file name holds)."""
    return np.frombuffer(b"\0".join(items), dtype=np.uint8) if items else np.zeros(0, np.uint8)


def _split(a: np.ndarray, count: int) -> List[bytes]:
    return a.tobytes().split(b"\0") if count else []


def _digest(paths: Sequence[bytes]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.hexdigest()


def _shard_path(work_dir: str, index: int) -> str:
    return os.path.join(work_dir, f"part-{index:06d}.npz")


def _write_shard(path: str, meta: Dict[str, Any], rows: np.ndarray, paths: List[bytes],
                 skipped: List[Tuple[bytes, str]]) -> None:
    """Writes the shard whole or not at all: a temporary file beside it, flushed, then renamed."""
    buf = io.BytesIO()
    np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), rows=rows, paths=_join(paths),
             skipped_paths=_join([p for p, _ in skipped]),
             skipped_reasons=_join([r.encode("utf-8", "surrogateescape") for _, r in skipped]))
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        with open(tmp, "xb") as f:
            f.write(buf.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass
class _Shard:
    rows: np.ndarray
    paths: List[bytes]
    skipped: List[Tuple[bytes, str]]
    row_shape: Tuple[int, ...]


def _read_shard(path: str, index: int, inputs: Sequence[bytes]) -> _Shard:
    """The shard of partition `index`, checked against that partition's inputs: every input exactly once,
    as a row or as a skip, in input order. ValueError says what is wrong."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["meta"].tobytes())
        rows = z["rows"]
        n_ok, n_skip = int(meta["rows"]), int(meta["skipped"])
        paths = _split(z["paths"], n_ok)
        skipped = list(zip(_split(z["skipped_paths"], n_skip),
                           (r.decode("utf-8", "surrogateescape") for r in _split(z["skipped_reasons"], n_skip))))
    if meta.get("format") != _SHARD_FORMAT or meta.get("partition") != index or meta.get("inputs") != _digest(inputs):
        raise ValueError(f"{path}: belongs to another partition or run")
    row_shape = tuple(int(d) for d in meta["row_shape"])
    if rows.dtype != np.float32 or rows.shape != (n_ok,) + row_shape or len(paths) != n_ok or len(skipped) != n_skip:
        raise ValueError(f"{path}: damaged (rows, paths and counts disagree)")
    if not np.isfinite(rows).all():
        raise ValueError(f"{path}: damaged (rows hold NaN or infinity, which no forward gives)")
    ok, sk = iter(paths), iter(skipped)
    next_ok, next_sk = next(ok, None), next(sk, None)
    for p in inputs:  # the rows and skips interleave back into the inputs, in order
        if next_ok is not None and next_ok == p:
            next_ok = next(ok, None)
        elif next_sk is not None and next_sk[0] == p:
            next_sk = next(sk, None)
        else:
            raise ValueError(f"{path}: does not account for every input of partition {index} in order")
    if next_ok is not None or next_sk is not None:
        raise ValueError(f"{path}: holds more than partition {index}'s inputs")
    return _Shard(rows, paths, skipped, row_shape)


# ---- the worker side -------------------------------------------------------------------------------------

_models: Dict[Tuple[Any, ...], "dinov3.Model"] = {}
_models_lock = threading.Lock()


def _tune_malloc() -> None:
    """Dask's nanny starts worker processes with MALLOC_TRIM_THRESHOLD_=65536, which also freezes glibc's
    mmap threshold at 128 KiB: every image, batch and output buffer is then a fresh mmap, faulted in page by
    page and unmapped again (measured here, 500 images on 2 workers x 1 engine thread: 28.5 s, and 22.5 s
    with this). A worker running the engine asks glibc to serve blocks up to 32 MiB (glibc's own upper
    bound for the threshold) from its heap instead; nothing else of Dask's memory handling changes."""
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        m_mmap_threshold = -3
        libc.mallopt(m_mmap_threshold, 32 << 20)
    except (OSError, AttributeError):  # not glibc: nothing to undo
        pass


def _worker_model(spec: str, backend: str, precision: str, threads: int,
                  int8_plan: Optional[str] = None) -> "dinov3.Model":
    """The model of this worker process, loaded on first use and kept."""
    key = (spec, backend, precision, threads, int8_plan)
    with _models_lock:
        model = _models.get(key)
        if model is None:
            if not _models:
                _tune_malloc()
            model = dinov3.Model(spec, backend=backend, precision=precision, threads=threads, int8_plan=int8_plan)
            _models[key] = model
        return model


def _engine_threads(plan: Dict[str, int], fixed: Optional[int]) -> int:
    if fixed:
        return fixed
    try:
        worker = _dask_distributed.get_worker()
    except ValueError:  # not in a worker (called directly)
        return _cores()
    return plan.get(worker.address) or max(1, _cores() // max(1, worker.nthreads))


def _embed_partition(index: int, inputs: List[bytes], work_dir: str, job: Dict[str, Any],
                     plan: Dict[str, int]) -> Dict[str, Any]:
    """Runs on a worker: embeds one partition and writes its shard. Returns a small summary."""
    start = time.perf_counter()
    threads = _engine_threads(plan, job["threads"])
    model = _worker_model(job["model"], job["backend"], job["precision"], threads, job.get("int8_plan"))
    it = model.embed(inputs, batch_size=job["batch_size"], normalize=job["normalize"], features=job["features"],
                     pool=job["pool"], workers=job["decode_threads"])
    rows: List[np.ndarray] = []
    paths: List[bytes] = []
    for r in it:
        rows.append(r.features if job["features"] else r.pooled)
        paths.append(os.fsencode(r.path))
    skipped = [(os.fsencode(p), reason) for p, reason in it.skipped]
    c = model.config
    if job["features"]:
        tokens = 1 + c["num_reg_tokens"] + (c["input_size"][1] // c["patch_size"]) * (c["input_size"][2] // c["patch_size"])
        row_shape: Tuple[int, ...] = (tokens, c["embed_dim"])
    else:
        row_shape = (c["embed_dim"],)
    block = np.stack(rows) if rows else np.zeros((0,) + row_shape, np.float32)
    meta = {"format": _SHARD_FORMAT, "partition": index, "inputs": _digest(inputs), "rows": len(paths),
            "skipped": len(skipped), "row_shape": list(row_shape)}
    _write_shard(_shard_path(work_dir, index), meta, block, paths, skipped)
    return {"partition": index, "rows": len(paths), "skipped": len(skipped), "seconds": time.perf_counter() - start,
            "threads": threads}


# ---- the client side -------------------------------------------------------------------------------------

def _thread_plan(client: Any) -> Dict[str, int]:
    """Engine threads per worker address: each machine's cores split over the threads of all the worker
    processes on it, so engine threads x worker threads never exceed the cores."""
    workers = client.scheduler_info().get("workers", {})
    if not workers:
        return {}
    try:
        cores = client.run(_cores)
    except Exception as e:  # most often: the package is not installed where the workers run
        raise RuntimeError(f"the workers cannot run dinov3.distributed ({type(e).__name__}: {e}); install the "
                           "dinov3 package on every worker machine (scripts/install_python.sh)") from e
    per_host: Dict[str, int] = {}
    for addr, w in workers.items():
        per_host[w["host"]] = per_host.get(w["host"], 0) + int(w["nthreads"])
    return {addr: max(1, int(cores.get(addr, 1)) // per_host[w["host"]]) for addr, w in workers.items()}


def _format_duration(s: float) -> str:
    if s >= 3600:
        return f"{int(s // 3600)}h{int(s // 60) % 60:02d}m"
    if s >= 60:
        return f"{int(s // 60)}m{int(s) % 60:02d}s"
    return f"{s:.1f}s"


class _Progress:
    """Partitions done, images/s and ETA on stderr: one updating line on a terminal, else a line every
    few seconds."""

    def __init__(self, total_partitions: int, total_images: int, quiet: bool) -> None:
        self.total_partitions, self.total_images, self.quiet = total_partitions, total_images, quiet
        self.tty = sys.stderr.isatty()
        self.start = time.perf_counter()
        self.last = 0.0
        self.partitions = self.images = 0

    def update(self, partitions: int, images: int, force: bool = False) -> None:
        self.partitions += partitions
        self.images += images
        now = time.perf_counter()
        if self.quiet or (not force and not self.tty and now - self.last < 5):
            return
        self.last = now
        rate = self.images / max(now - self.start, 1e-9)
        left = self.total_images - self.images
        eta = _format_duration(left / rate) if rate > 0 else "?"
        line = f"partitions {self.partitions}/{self.total_partitions}  {self.images}/{self.total_images} images  " \
               f"{rate:.1f} img/s  ETA {eta}"
        sys.stderr.write(("\r\033[K" + line) if self.tty else line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty and not self.quiet:
            sys.stderr.write("\r\033[K")


def _partitions(paths: List[bytes], partition_size: int) -> List[List[bytes]]:
    """ceil(N / partition_size) partitions in input order, of sizes that differ by at most one (so the
    last one is not a small remainder that leaves workers idle at the end of a run)."""
    count = -(-len(paths) // partition_size)
    base, extra = divmod(len(paths), count)
    parts, start = [], 0
    for i in range(count):
        end = start + base + (1 if i < extra else 0)
        parts.append(paths[start:end])
        start = end
    return parts


def _describe_run(job: Dict[str, Any], partition_size: int, paths: Sequence[bytes]) -> Dict[str, Any]:
    return {"format": _SHARD_FORMAT, "job": {k: v for k, v in job.items() if k != "decode_threads"},
            "partition_size": partition_size, "inputs": len(paths), "inputs_sha256": _digest(paths)}


_STATE_FILE = re.compile(r"(run\.json(\.tmp)?|inputs\.txt|part-\d{6}\.npz(\.tmp-[0-9a-f]{32})?)")


def _is_state_file(work_dir: str, name: str) -> bool:
    """A regular file of the names a run writes in its work folder (run.json, inputs.txt, shards)."""
    return bool(_STATE_FILE.fullmatch(name)) and stat.S_ISREG(os.lstat(os.path.join(work_dir, name)).st_mode)


def _prepare_work_dir(work_dir: str, run: Dict[str, Any], paths: Sequence[bytes], resume: bool,
                      overwrite: bool) -> bool:
    """Creates the work folder, or checks an interrupted run's for a resume. True when resuming."""
    run_file = os.path.join(work_dir, "run.json")
    if os.path.lexists(work_dir):
        if not os.path.isdir(work_dir) or os.path.islink(work_dir):
            raise ValueError(f"{work_dir}: exists and is not an interrupted run's work folder")
        if resume:
            try:
                if not stat.S_ISREG(os.stat(run_file).st_mode):  # a FIFO would block the open
                    raise ValueError(f"{run_file} is not a regular file")
                with open(run_file, encoding="utf-8") as f:
                    before = json.load(f)
            except (OSError, ValueError) as e:
                raise ValueError(f"{work_dir}: not a resumable run ({e}); overwrite=True starts over") from e
            if not isinstance(before, dict):
                raise ValueError(f"{work_dir}: not a resumable run ({run_file} is not a run description); "
                                 "overwrite=True starts over")
            for key in ("job", "partition_size", "inputs", "inputs_sha256"):
                if before.get(key) != run.get(key):
                    raise ValueError(f"{work_dir}: the interrupted run had another {key.replace('_', ' ')} "
                                     f"({before.get(key)!r}, now {run.get(key)!r}); overwrite=True starts over")
            return True
        if not overwrite:
            raise ValueError(f"{work_dir}: an interrupted run exists (resume=True / --resume continues it, "
                             "overwrite=True / --overwrite starts over)")
        # overwrite=True replaces the output and a run's own work folder, never a folder of something else
        # that happens to have the work folder's name.
        foreign = [n for n in os.listdir(work_dir) if not _is_state_file(work_dir, n)]
        if foreign:
            raise ValueError(f"{work_dir}: exists and is not a run's work folder (it holds {foreign[0]!r}, which no "
                             "run writes); it is left as it is: move it or choose another output")
        shutil.rmtree(work_dir)
    os.makedirs(work_dir)
    with open(os.path.join(work_dir, "inputs.txt"), "wb") as f:
        f.write(b"".join(_dinov3.escape_line(p) + b"\n" for p in paths))
    tmp = run_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(run, f, indent=1)
    os.replace(tmp, run_file)
    return False


def embed(inputs: Sequence[Any], model: str, output: Any, client: Any = None, batch_size: int = 8,
          partition_size: int = DEFAULT_PARTITION_SIZE, *, backend: str = "cpu", precision: str = "fp32",
          int8_plan: Optional[str] = None, threads: Optional[int] = None, pool: Optional[str] = None, normalize: bool = False,
          features: bool = False, decode_threads: int = 1, retries: int = 2, resume: bool = False,
          overwrite: bool = False, quiet: bool = True, local_workers: Optional[int] = None) -> EmbedSummary:
    """Embeds the images `inputs` name (files, folders searched recursively, "@list.txt"; as `dinov3
    embed`) on a Dask cluster into `output` (.npy) and its index (output's stem + ".index.txt").

    model: a folder, checkpoint file or hub id every worker can read. client: a dask.distributed.Client;
    None starts a local cluster of local_workers processes (default: local_cluster_size()) for the call.
    batch_size: images per forward; partition_size: the most images per task (and per shard); the inputs
    are cut into ceil(N / partition_size) partitions of equal size (within one). threads: engine
    threads per worker process (None: the machine's cores over its worker threads). int8_plan: with
    precision "int8", a plan file (dinov3.calibrate_int8) every worker can read. pool, normalize,
    features: as `dinov3 embed` (features=True writes [N, T, D]). retries: extra tries of a failed
    partition. resume: reuse the finished shards of an interrupted run with the same inputs and options.
    overwrite: replace an existing output (and start an interrupted run over). quiet=False prints
    progress on stderr.

    Raises ValueError for a wrong argument or an output that may not be written, EmbedFailed when
    partitions failed after their retries (nothing is published; the shards stay for a resume).
    """
    start = time.perf_counter()
    output = os.fsdecode(os.fspath(output))
    if not 1 <= int(batch_size) <= 4096:
        raise ValueError("batch_size must be in [1, 4096]")
    if int(partition_size) < 1:
        raise ValueError("partition_size must be at least 1")
    if threads is not None and int(threads) < 1:
        raise ValueError("threads must be at least 1 (None: from the machine)")
    if not 1 <= int(decode_threads) <= 256:
        raise ValueError("decode_threads must be in [1, 256]")
    if int(retries) < 0:
        raise ValueError("retries must be >= 0")
    if int8_plan is not None and precision != "int8":
        raise ValueError("int8_plan needs precision \"int8\"")
    if pool not in (None, "avg", "token", "default"):
        raise ValueError(f"unknown pool {pool!r} (avg, token or default)")
    if local_workers is not None and int(local_workers) < 1:
        raise ValueError("local_workers must be at least 1")
    if client is not None and not callable(getattr(client, "submit", None)):
        raise ValueError(f"client must be a dask.distributed.Client, not {type(client).__name__} "
                         "(for a scheduler address: Client(address))")
    # The engine options as far as this machine can tell, before any work folder exists: the backend and
    # precision names, and with a local cluster the model and plan themselves.
    _dinov3.check_engine_options(backend, precision, 1 if threads is None else int(threads))
    if client is None:
        _dinov3.model_files(os.fsencode(model))  # raises where the model is not found
        if int8_plan is not None and not os.path.isfile(int8_plan):
            raise FileNotFoundError(f"{os.fspath(int8_plan)}: no such int8 plan file")
    work_dir = work_dir_for(output)
    resuming_possible = resume and os.path.isdir(work_dir)
    _dinov3.check_embed_output(os.fsencode(output), bool(overwrite or resuming_possible))  # before any work
    if not output.endswith(".npy"):
        raise ValueError(f"{output}: the output must be a .npy file")
    if isinstance(inputs, (str, bytes, os.PathLike)):
        inputs = [inputs]
    paths: List[bytes] = _dinov3.expand_inputs([os.fsencode(i) for i in inputs])
    if not paths:
        raise ValueError("the inputs hold no image files")
    kept: Optional[List[bytes]] = None
    for out in (os.fsencode(output), _dinov3.embed_index_path(os.fsencode(output))):
        if os.path.exists(out):  # an input is never written over, overwrite or not
            if kept is None:
                kept = list(paths)
                try:
                    kept += _dinov3.model_files(os.fsencode(model))
                except (OSError, ValueError):  # a model only the workers see
                    pass
            _dinov3.check_not_written_over(out, kept, "an input")

    job = {"model": os.fspath(model), "backend": backend, "precision": precision,
           "int8_plan": None if int8_plan is None else os.path.abspath(os.fspath(int8_plan)),
           "threads": None if threads is None else int(threads), "batch_size": int(batch_size),
           "pool": None if pool == "default" else pool, "normalize": bool(normalize), "features": bool(features),
           "decode_threads": int(decode_threads)}
    partition_size = int(partition_size)
    run = _describe_run(job, partition_size, paths)
    resuming = _prepare_work_dir(work_dir, run, paths, resume, overwrite)
    parts = _partitions(paths, partition_size)

    # Shards of an interrupted run: reused when they check out, recomputed otherwise.
    done: Dict[int, bool] = {}
    if resuming:
        for name in os.listdir(work_dir):
            if ".tmp-" in name:
                os.unlink(os.path.join(work_dir, name))
        for i, part in enumerate(parts):
            shard = _shard_path(work_dir, i)
            if os.path.lexists(shard):
                if os.path.isdir(shard) and not os.path.islink(shard):
                    raise ValueError(f"{shard}: a folder where the run keeps a shard; it is left as it is: move it "
                                     "or pass overwrite=True to start over")
                try:
                    if not os.path.isfile(shard):  # a FIFO or a device there would block or never end
                        raise ValueError(f"{shard}: not a regular file")
                    _read_shard(shard, i, part)
                    done[i] = True
                except (OSError, ValueError, KeyError):
                    os.unlink(shard)
    reused = len(done)

    own_cluster = None
    if client is None:
        n_workers, engine = local_cluster_size()
        if local_workers is not None:
            n_workers, engine = int(local_workers), max(1, _cores() // int(local_workers))
        own_cluster = local_cluster(n_workers)
        client = _dask_distributed.Client(own_cluster)
        if job["threads"] is None:
            job = dict(job, threads=engine)
    try:
        return _run(client, job, parts, paths, output, work_dir, done, reused, int(retries), bool(quiet), start,
                    show_dashboard=own_cluster is None or importlib.util.find_spec("bokeh") is not None)
    finally:
        if own_cluster is not None:
            client.close()
            own_cluster.close()


def _run(client: Any, job: Dict[str, Any], parts: List[List[bytes]], paths: List[bytes], output: str,
         work_dir: str, done: Dict[int, bool], reused: int, retries: int, quiet: bool, start: float,
         show_dashboard: bool) -> EmbedSummary:
    dashboard = None
    services = client.scheduler_info().get("services", {})
    if show_dashboard and "dashboard" in services:
        dashboard = client.dashboard_link
    plan = _thread_plan(client)
    todo = [i for i in range(len(parts)) if i not in done]
    if not quiet:
        n_workers = len(client.scheduler_info().get("workers", {}))
        threads = job["threads"] or (sorted(set(plan.values())) if plan else "auto")
        sys.stderr.write(f"dinov3.distributed: {len(paths)} inputs in {len(parts)} partitions"
                         f"{f' ({reused} done before)' if reused else ''}, {n_workers} workers, engine threads "
                         f"{threads}, work folder {work_dir}\n")
        if dashboard:
            sys.stderr.write(f"dinov3.distributed: dashboard {dashboard}\n")
    progress = _Progress(len(parts), len(paths), quiet)
    progress.update(reused, sum(len(parts[i]) for i in done), force=reused > 0)
    run_id = uuid.uuid4().hex[:8]
    futures = {}
    for i in todo:
        f = client.submit(_embed_partition, i, parts[i], work_dir, job, plan, key=f"dinov3-embed-{run_id}-{i:06d}",
                          retries=retries, pure=False)
        futures[f] = i
    failures: List[Tuple[int, str]] = []
    worker_seconds = 0.0
    used_threads: Dict[str, int] = {}
    for f in _dask_distributed.as_completed(list(futures)):
        i = futures[f]
        try:
            result = f.result()
        except Exception as e:  # the partition failed after its retries (or its workers kept dying)
            failures.append((i, f"{type(e).__name__}: {e}"))
            progress.update(0, 0)
            continue
        done[i] = True
        worker_seconds += result["seconds"]
        used_threads[str(result["threads"])] = used_threads.get(str(result["threads"]), 0) + 1
        progress.update(1, len(parts[i]))
    progress.done()
    if failures:
        failures.sort()
        first = [sum(len(p) for p in parts[:i]) for i in range(len(parts))]
        lines = "\n".join(f"  partition {i} (inputs {first[i]}-{first[i] + len(parts[i]) - 1}): {m}" for i, m in failures)
        if not done:  # nothing to resume: the work folder goes, so a corrected rerun starts afresh
            shutil.rmtree(work_dir, ignore_errors=True)
            kept = "no partition finished, and the work folder is removed"
        else:
            kept = f"the finished shards are kept in {work_dir} (--resume continues)"
        raise EmbedFailed(f"{len(failures)} of {len(parts)} partitions failed after {retries} retries; nothing was "
                          f"published; {kept}:\n{lines}", failures, work_dir)

    # Every shard checked against its partition's inputs before anything is written.
    shards = [_read_shard(_shard_path(work_dir, i), i, parts[i]) for i in range(len(parts))]
    row_shape = shards[0].row_shape
    if any(s.row_shape != row_shape for s in shards):
        raise ValueError(f"{work_dir}: shards of different row shapes")
    rows = sum(len(s.paths) for s in shards)
    index_paths = [p for s in shards for p in s.paths]
    _dinov3.publish_npy(os.fsencode(output), [rows] + list(row_shape), (s.rows for s in shards), index_paths, True)
    skipped = [(os.fsdecode(p), r) for s in shards for p, r in s.skipped]
    shutil.rmtree(work_dir, ignore_errors=True)
    return EmbedSummary(output=output, index=os.fsdecode(_dinov3.embed_index_path(os.fsencode(output))), rows=rows,
                        row_shape=row_shape, skipped=skipped, partitions=len(parts), computed=len(todo), reused=reused,
                        seconds=time.perf_counter() - start, worker_seconds=worker_seconds, dashboard=dashboard,
                        engine_threads=used_threads)
