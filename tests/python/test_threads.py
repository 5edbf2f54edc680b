"""One model shared by four Python threads gives the same results as one thread; the GIL is released; daemon
threads at exit, a fork, and Ctrl-C in a long call each end cleanly."""
# ctest labels: unit

import threading
import time

import numpy as np

from conftest import IMAGES, MODELS, load_model, run_python


def test_four_threads_on_one_model(tiny):
    rng = np.random.default_rng(7)
    inputs = [rng.standard_normal((2, 3, 64, 64)).astype(np.float32) for _ in range(4 * 6)]
    serial = [tiny.forward(x, layers=[0]) for x in inputs]
    results = [None] * len(inputs)
    errors = []

    def work(t):
        try:
            for i in range(t, len(inputs), 4):
                results[i] = tiny.forward(inputs[i], layers=[0])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for want, got in zip(serial, results):
        np.testing.assert_array_equal(got.features, want.features)
        np.testing.assert_array_equal(got.pooled, want.pooled)
        np.testing.assert_array_equal(got.blocks[0], want.blocks[0])


def test_forward_releases_the_gil():
    model = load_model("vits16")
    x = np.zeros((2, 3, 256, 256), np.float32)
    model.forward(x)  # warm up
    count = 0
    stop = False

    def spin():
        nonlocal count
        while not stop:
            count += 1

    t = threading.Thread(target=spin)
    t.start()
    time.sleep(0.05)
    before = count
    start = time.perf_counter()
    model.forward(x)
    elapsed = time.perf_counter() - start
    during = count - before
    stop = True
    t.join()
    # A Python thread holding the GIL through the forward would leave the counter still.
    assert elapsed > 0.02 and during > 1000, (elapsed, during)


def test_python_exits_cleanly_while_daemon_threads_are_inside_the_engine():
    # At exit, a daemon thread that takes the GIL back is ended by pthread_exit; its unwinding through the
    # GIL guard's destructor aborted the interpreter (exit code 134, "terminate called"). The long forward
    # keeps a thread inside the engine's stop check (Ctrl-C) now and then: taking the GIL there during the
    # shutdown aborted (a second pthread_exit in the first one's unwind) or crashed (~1 exit in 25).
    script = f"""
import sys, threading, time
import numpy as np
import dinov3
model = dinov3.Model({str(MODELS / "tiny")!r}, threads=1)
large = dinov3.Model({str(MODELS / "vits16")!r}, threads=1)
image = {str(IMAGES / "chelsea.png")!r}
x = np.zeros((1, 3, 64, 64), np.float32)
batch = np.zeros((4, 3, 256, 256), np.float32)
def loop(call):
    while True:
        call()
for call in (lambda: model.preprocess(image), lambda: model.forward(x), lambda: list(model.embed([image])),
             lambda: large.forward(batch)):
    threading.Thread(target=loop, args=(call,), daemon=True).start()
time.sleep(0.5)
print("main thread done", flush=True)
"""
    for _ in range(3):
        r = run_python(script, timeout=120)
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        assert r.stdout == "main thread done\n" and "terminate" not in r.stderr, (r.stdout, r.stderr)


def test_a_forked_child_runs_the_model_and_refuses_the_parents_embed_iterator():
    # fork() copies only the calling thread. In the child, the model's forward runs its tasks on the caller
    # and gives the parent's values; an embed iterator started in the parent, whose decoding threads are not
    # there, raises instead of waiting forever; a new one works; and freeing both returns (the backend's
    # thread pool used to wait for its workers there). The parent carries on as before.
    script = f"""
import os, signal, sys, time
import numpy as np
import dinov3
model = dinov3.Model({str(MODELS / "tiny")!r}, threads=2)
x = np.random.default_rng(3).standard_normal((2, 3, 64, 64)).astype(np.float32)
want = model.forward(x)
images = [{str(IMAGES / "chelsea.png")!r}, {str(IMAGES / "rocket.jpg")!r}] * 2
it = model.embed(images, batch_size=1)
first = next(it).path
time.sleep(0.3)  # the backend's workers and the decoders go to sleep
pid = os.fork()
if pid == 0:
    signal.alarm(60)
    got = model.forward(x)
    same = np.array_equal(got.features, want.features) and np.array_equal(got.pooled, want.pooled)
    try:
        next(it)
        refused = "no error"
    except RuntimeError as e:
        refused = str(e)
    fresh = [r.path for r in model.embed(images[:2])] == images[:2]
    print("child", same, fresh, refused, flush=True)
    del it, model
    sys.exit(0)
_, status = os.waitpid(pid, 0)
rest = [r.path for r in it]
print("parent", status, [first] + rest == images, flush=True)
"""
    r = run_python(script, timeout=180)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    lines = r.stdout.splitlines()
    assert len(lines) == 2, (r.stdout, r.stderr)
    assert lines[0].startswith("child True True dinov3: this embed iterator was started in another process"), lines
    assert lines[1] == "parent 0 True", lines  # 0: the child exited normally (SIGALRM: 14)


def test_ctrl_c_stops_a_long_forward_between_blocks_and_the_model_stays_usable():
    # SIGINT a tenth of the way into a forward that takes about a second: KeyboardInterrupt well before the
    # forward would have finished (it came only after it, before the models' stop check), and the model
    # gives the same values afterwards. In a child interpreter, so a KeyboardInterrupt that escapes cannot
    # stop the test session.
    script = f"""
import os, signal, threading, time
import numpy as np
import dinov3
model = dinov3.Model({str(MODELS / "vits16")!r}, threads=2)
x = np.random.default_rng(5).standard_normal((16, 3, 256, 256)).astype(np.float32)
want = model.forward(x[:1])
full = float("inf")
for _ in range(2):  # the faster of two: the first also plans the buffers for this batch
    t0 = time.perf_counter(); model.forward(x); full = min(full, time.perf_counter() - t0)
timer = threading.Timer(0.1 * full, lambda: os.kill(os.getpid(), signal.SIGINT))
timer.start()
t0 = time.perf_counter()
try:
    model.forward(x)
    outcome = "finished"
except KeyboardInterrupt:
    outcome = "interrupted"
stopped = time.perf_counter() - t0
timer.join()
got = model.forward(x[:1])
same = np.array_equal(got.features, want.features) and np.array_equal(got.pooled, want.pooled)
print(outcome, stopped / full, same, flush=True)
"""
    r = run_python(script, timeout=300)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    outcome, fraction, same = r.stdout.split()
    assert outcome == "interrupted", r.stdout
    assert float(fraction) < 0.6, r.stdout  # stopped between blocks, not after the whole batch
    assert same == "True", r.stdout


def test_an_embed_batch_stopped_by_ctrl_c_runs_again_on_the_next_call():
    # Its images were already taken from the decoders when the forward stopped: going on after the
    # KeyboardInterrupt gives every image, in order, with the values of an uninterrupted run.
    script = f"""
import os, signal, threading, time
import numpy as np
import dinov3
model = dinov3.Model({str(MODELS / "vits16")!r}, threads=2)
photos = [{str(IMAGES / "chelsea.png")!r}, {str(IMAGES / "rocket.jpg")!r}, {str(IMAGES / "camera.png")!r}]
paths = (photos * 12)[:32]
want = list(model.embed(paths, batch_size=32))
it = model.embed(paths, batch_size=32)
time.sleep(3.0)  # every image decoded ahead: the next call's time is the forward's
t0 = time.perf_counter()
first = next(iter(model.embed(paths, batch_size=32)))
full = time.perf_counter() - t0
timer = threading.Timer(0.15 * full, lambda: os.kill(os.getpid(), signal.SIGINT))
timer.start()
try:
    got = [next(it)]
    outcome = "finished"
except KeyboardInterrupt:
    got = []
    outcome = "interrupted"
timer.join()
got += list(it)
same = [r.path for r in got] == paths and all(np.array_equal(a.pooled, b.pooled) for a, b in zip(got, want))
print(outcome, same, len(got), flush=True)
"""
    r = run_python(script, timeout=300)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert r.stdout.split() == ["interrupted", "True", "32"], r.stdout
