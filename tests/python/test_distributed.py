"""dinov3.distributed on real Dask clusters (local worker processes, and a dask-scheduler with two dask-worker
processes on 127.0.0.1): the output equals `dinov3 embed`'s on the same inputs, in the same order, also when a
worker is killed mid-run and when the client is killed and the run resumed."""
# ctest labels: slow

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import dinov3
import dinov3.distributed as dd

from conftest import CLI, IMAGES, MODELS

TINY = str(MODELS / "tiny")
PYTHONPATH = str(Path(dinov3.__file__).resolve().parents[1])
COPIES = 18  # 11 photos x 18 = 198 images, plus the bad files


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """~200 images (links to the fixture photos, in nested folders, one name holding a newline and a tab,
    one whose bytes are not UTF-8)
    and the unreadable fixtures."""
    root = tmp_path_factory.mktemp("collection")
    photos = sorted(p for p in IMAGES.iterdir() if p.is_file())
    n = 0
    for copy in range(COPIES):
        folder = root / f"batch{copy % 3}"
        folder.mkdir(exist_ok=True)
        for p in photos:
            name = f"img{n:04d}{p.suffix}"
            if n == 7:
                name = f"odd\nname\t{n}{p.suffix}"
            elif n == 8:
                name = os.fsdecode(b"latin1_caf\xe9_8") + p.suffix  # not UTF-8: the bytes must round-trip
            (folder / name).symlink_to(p)
            n += 1
    for p in sorted((IMAGES / "bad").iterdir()):
        (root / f"bad_{p.name}").symlink_to(p)
    (root / "batch1" / "dangling.jpg").symlink_to(root / "nowhere.jpg")
    return root


@pytest.fixture(scope="module")
def reference(collection, tmp_path_factory):
    """`dinov3 embed` on the collection: (rows, index bytes)."""
    out = tmp_path_factory.mktemp("reference") / "ref.npy"
    subprocess.run([CLI, "embed", "--model", TINY, str(collection), "-o", str(out), "-q"], check=True)
    return np.load(out), (out.parent / "ref.index.txt").read_bytes()


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                       silence_logs=50)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def assert_same_output(out, reference):
    rows, index = reference
    got = np.load(out)
    assert got.shape == rows.shape and got.dtype == np.float32
    rel = np.linalg.norm(got - rows, axis=1) / np.linalg.norm(rows, axis=1)
    assert rel.max() <= 1e-6, rel.max()
    assert Path(str(out)[:-len(".npy")] + ".index.txt").read_bytes() == index


def test_rows_and_order_equal_cli_embed(collection, reference, client, tmp_path):
    out = tmp_path / "out.npy"
    summary = dd.embed([str(collection)], TINY, out, client=client, partition_size=16)
    assert_same_output(out, reference)
    assert summary.rows == reference[0].shape[0] and summary.partitions == -(-(summary.rows + len(summary.skipped)) // 16)
    skipped = sorted(os.path.basename(p) for p, _ in summary.skipped)
    assert skipped == sorted(["dangling.jpg"] + [f"bad_{p.name}" for p in (IMAGES / "bad").iterdir()])
    assert all(reason for _, reason in summary.skipped)
    assert not os.path.exists(dd.work_dir_for(out))  # removed once published
    # Never replaced without overwrite.
    with pytest.raises(ValueError, match="already exists"):
        dd.embed([str(collection)], TINY, out, client=client)
    summary = dd.embed([str(collection)], TINY, out, client=client, partition_size=50, overwrite=True)
    assert_same_output(out, reference)


def test_worker_killed_mid_run(collection, reference, client, tmp_path):
    out = tmp_path / "out.npy"
    result = {}

    def run():
        try:
            result["summary"] = dd.embed([str(collection)], TINY, out, client=client, partition_size=12, batch_size=1)
        except BaseException as e:  # reported by the main thread
            result["error"] = e

    pids = client.run(os.getpid)
    worker = threading.Thread(target=run)
    worker.start()
    work = Path(dd.work_dir_for(out))
    killed = None
    deadline = time.time() + 120
    while killed is None and worker.is_alive() and time.time() < deadline:
        shards = list(work.glob("part-*.npz")) if work.exists() else []
        busy = [addr for addr, keys in client.processing().items() if keys and addr in pids]
        if len(shards) >= 2 and busy:
            killed = (busy[0], len(shards))
            os.kill(pids[busy[0]], signal.SIGKILL)
        time.sleep(0.005)
    worker.join(300)
    assert killed is not None, "the run ended before a worker could be killed"
    assert "error" not in result, result.get("error")
    assert killed[1] < result["summary"].partitions
    assert_same_output(out, reference)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed worker


def run_cli(args, **kwargs):
    env = dict(os.environ, PYTHONPATH=PYTHONPATH)
    return subprocess.Popen([sys.executable, "-m", "dinov3.distributed", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace", **kwargs)


def test_client_killed_then_resumed(collection, reference, tmp_path):
    out = tmp_path / "out.npy"
    args = ["embed", "--model", TINY, str(collection), "-o", str(out), "--local-workers", "2", "--partition-size", "8",
            "--batch-size", "1"]
    proc = run_cli(args, start_new_session=True)  # its own process group: the local cluster dies with it
    work = Path(dd.work_dir_for(out))
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline and len(list(work.glob("part-*.npz"))) < 3:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(list(work.glob("part-*.npz")))
    assert finished >= 3 and not out.exists()

    again = run_cli(args)  # without --resume: refused, nothing touched
    _, err = again.communicate(timeout=120)
    assert again.returncode == 1 and "--resume" in err and len(list(work.glob("part-*.npz"))) == finished

    resumed = run_cli(args + ["--resume"])
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    reused = int(err.split(" done before)")[0].rsplit("(", 1)[1])
    assert reused >= finished - 1  # a shard being renamed at the kill may be the one not yet listed
    assert_same_output(out, reference)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_scheduler_and_two_workers(collection, reference, tmp_path):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=PYTHONPATH)
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen(["dask-scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for i in range(2):
            procs.append(subprocess.Popen(
                ["dask-worker", address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                 "--local-directory", str(tmp_path / f"worker{i}")],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with distributed.Client(address, timeout="60s") as c:
            c.wait_for_workers(2, timeout=120)
        out = tmp_path / "out.npy"
        proc = run_cli(["embed", "--scheduler", address, "--model", TINY, str(collection), "-o", str(out),
                        "--partition-size", "20"])
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "2 workers, engine threads" in err
        assert_same_output(out, reference)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_failing_partitions_are_retried_then_reported_and_nothing_published(collection, client, tmp_path):
    broken = tmp_path / "broken_model"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    out = tmp_path / "out.npy"
    with pytest.raises(dd.EmbedFailed) as failed:
        dd.embed([str(collection)], str(broken), out, client=client, partition_size=100, retries=1)
    assert len(failed.value.failures) == 3
    assert "after 1 retries" in str(failed.value) and "config.json" in str(failed.value)
    # No partition finished: nothing to resume, so no work folder stands in the way of the corrected rerun.
    assert "no partition finished" in str(failed.value)
    assert not out.exists() and not os.path.exists(dd.work_dir_for(out))


def test_an_int8_plan_reaches_the_workers(collection, reference, client, tmp_path):
    plan_file = tmp_path / "plan.json"
    plan = dinov3.calibrate_int8(TINY, [str(IMAGES / "rocket.jpg")], plan_file, budget=0.5)
    for i, layer in enumerate(plan["layers"]):  # a mix: every other layer back to bf16
        if i % 2:
            layer["precision"] = "bf16"
    plan_file.write_text(json.dumps(plan))
    want = tmp_path / "cli.npy"
    subprocess.run([CLI, "embed", "--model", TINY, "--precision", "int8", "--int8-plan", str(plan_file),
                    str(collection), "-o", str(want), "-q"], check=True)
    out = tmp_path / "out.npy"
    dd.embed([str(collection)], TINY, out, client=client, partition_size=64, precision="int8", int8_plan=plan_file)
    assert_same_output(out, (np.load(want), (tmp_path / "cli.index.txt").read_bytes()))
    fp32 = reference[0]
    assert (np.linalg.norm(np.load(out) - fp32, axis=1) / np.linalg.norm(fp32, axis=1)).max() > 1e-4  # not fp32


def test_bad_arguments(collection, tmp_path):
    with pytest.raises(ValueError, match="int8_plan needs precision"):
        dd.embed([str(collection)], TINY, tmp_path / "out.npy", int8_plan=tmp_path / "plan.json")
    with pytest.raises(ValueError, match=".npy"):
        dd.embed([str(collection)], TINY, tmp_path / "out.txt")
    with pytest.raises(ValueError, match="folder"):
        dd.embed([str(collection)], TINY, str(tmp_path) + "/")
    with pytest.raises(ValueError, match="no image files"):
        dd.embed([str(tmp_path)], TINY, tmp_path / "out.npy")
    with pytest.raises(ValueError, match="partition_size"):
        dd.embed([str(collection)], TINY, tmp_path / "out.npy", partition_size=0)
    with pytest.raises(FileNotFoundError):
        dd.embed(["@" + str(tmp_path / "no_list.txt")], TINY, tmp_path / "out.npy")
    # Engine options, the model and the client are checked before a work folder exists.
    for kwargs, error, message in [({"precision": "fp64"}, ValueError, "unknown precision 'fp64'"),
                                   ({"backend": "gpu"}, ValueError, "unknown backend 'gpu'"),
                                   ({"threads": 10**6}, ValueError, "thread"),
                                   ({"local_workers": 0}, ValueError, "local_workers"),
                                   ({"client": "tcp://127.0.0.1:1"}, ValueError, "dask.distributed.Client")]:
        with pytest.raises(error, match=message):
            dd.embed([str(collection)], TINY, tmp_path / "out.npy", **kwargs)
    with pytest.raises(FileNotFoundError, match="no such model"):
        dd.embed([str(collection)], str(tmp_path / "no_model"), tmp_path / "out.npy")
    assert not os.path.exists(dd.work_dir_for(tmp_path / "out.npy"))


def test_an_input_is_never_written_over(tmp_path):
    # dd.embed(..., "mine.npy", overwrite=True) with mine.npy among the inputs replaced it.
    mine = tmp_path / "mine.npy"
    np.save(mine, np.arange(5))
    before = mine.read_bytes()
    with pytest.raises(ValueError, match="mine.npy is an input; it is never written over"):
        dd.embed([str(IMAGES / "chelsea.png"), str(mine)], TINY, mine, overwrite=True)
    assert mine.read_bytes() == before


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(collection, tmp_path):
    # overwrite=True replaces the output and a run's work folder; a folder of the user's that happens to
    # be called OUT.npy.dask was deleted whole.
    out = tmp_path / "out.npy"
    work = Path(dd.work_dir_for(out))
    work.mkdir()
    (work / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match="is not a run's work folder"):
        dd.embed([str(collection)], TINY, out, overwrite=True)
    assert (work / "mine.txt").read_text() == "keep me" and not out.exists()
    # A file a run writes beside the user's does not make the folder a run's.
    (work / "inputs.txt").write_text("")
    with pytest.raises(ValueError, match="is not a run's work folder .*'mine.txt'"):
        dd.embed([str(collection)], TINY, out, overwrite=True)
    assert (work / "mine.txt").read_text() == "keep me"


def test_resume_never_blocks_on_a_fifo_in_the_work_folder(collection, tmp_path):
    # A FIFO as run.json blocked the resume before any cluster started.
    out = tmp_path / "out.npy"
    work = Path(dd.work_dir_for(out))
    work.mkdir()
    os.mkfifo(work / "run.json")
    with pytest.raises(ValueError, match="not a resumable run .*not a regular file"):
        dd.embed([str(collection)], TINY, out, resume=True)
