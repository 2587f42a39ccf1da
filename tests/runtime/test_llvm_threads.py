"""The generated thread pool: concurrent callers, fork, and shutdown before the code is freed."""

import gc
import os
import threading
from dataclasses import replace

import numpy as np

from codegen.llvm.target import host_target
from runtime.llvm_backend import aligned_copy, lower_graph
from tests.handgraphs import init_state, mlp_train_graph, random_data


def threaded_step():
    g = mlp_train_graph([300, 256, 10], 200, "relu", "ce", "adam")
    c = lower_graph(g, target=replace(host_target(), threads=2), use_cache=False)
    assert c.meta["threads"] == 2
    return g, c


def test_python_threads_share_one_compiled_step():
    g, c = threaded_step()
    states = [{k: aligned_copy(v) for k, v in init_state(g).items()} for _ in range(3)]
    data = random_data(g)
    ref = c.run({k: aligned_copy(v) for k, v in init_state(g).items()}, data)["loss"]
    out = [None] * 3

    def work(i):
        out[i] = c.run(states[i], data)["loss"]
    ts = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert all(o == ref for o in out)


def test_step_works_in_a_forked_child_and_after_shutdown():
    g, c = threaded_step()
    st = init_state(g)
    data = random_data(g)
    first = float(c.run(st, data)["loss"])   # starts the pool in the parent
    pid = os.fork()
    if pid == 0:  # child: the pool's threads did not survive fork; the step must restart it
        try:
            loss = float(c.run(init_state(g), data)["loss"])
            os._exit(0 if np.isclose(loss, first) else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    c2 = lower_graph(g, target=replace(host_target(), threads=2), use_cache=False)
    c2.run(init_state(g), data)
    del c2
    gc.collect()  # joins c2's workers, then frees its code
    assert np.isfinite(float(c.run(st, data)["loss"]))
