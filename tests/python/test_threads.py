"""One model shared by four Python threads gives the same results as one thread; the GIL is released."""
# ctest labels: unit

import os
import subprocess
import sys
import threading
import time

import numpy as np

from conftest import IMAGES, MODELS, load_model


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
    # GIL guard's destructor aborted the interpreter (exit code 134, "terminate called").
    script = f"""
import sys, threading, time
import numpy as np
import dinov3
model = dinov3.Model({str(MODELS / "tiny")!r}, threads=1)
image = {str(IMAGES / "chelsea.png")!r}
x = np.zeros((1, 3, 64, 64), np.float32)
def loop(call):
    while True:
        call()
for call in (lambda: model.preprocess(image), lambda: model.forward(x), lambda: list(model.embed([image]))):
    threading.Thread(target=loop, args=(call,), daemon=True).start()
time.sleep(0.5)
print("main thread done", flush=True)
"""
    for _ in range(3):
        r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        assert r.stdout == "main thread done\n" and "terminate" not in r.stderr, (r.stdout, r.stderr)
