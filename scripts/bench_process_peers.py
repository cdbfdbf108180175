#!/usr/bin/env python3
"""pluggy's side of scripts/bench-process.sh: the same hooks as the process plugins of
crates/trellis-process/benches/process_dispatch.rs, as plain pluggy plugins in one process.

- call: ``bench_echo(x=1)`` returning ``x + 1`` (one implementation);
- fanout_N: the same with N implementations (pluggy returns every result, in order);
- nested: the implementation calls the host (an object the host passes: its state) first;
- payload: ``bench_payload(data=<1 MiB str>)`` returning it;
- cold: a new interpreter that imports pluggy, registers the plugin and makes the first call,
  timed from spawn to the answer read;
- mem_per_plugin: what one more registered plugin (its own class) adds to the process's RSS;
  mem_process: the RSS of an interpreter with pluggy and one plugin.

Prints ``<key> <value>`` lines: nanoseconds (the median of timeit repeats, each the mean of
many calls) and bytes.
"""
import statistics
import subprocess
import sys
import time
import timeit

import pluggy

PROJECT = "bench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

COLD_STARTS = 20
PAYLOAD_BYTES = 1 << 20


class Spec:
    @hookspec
    def bench_echo(self, x):
        pass

    @hookspec
    def bench_payload(self, data):
        pass

    @hookspec
    def bench_nested(self, host, x):
        pass


class Host:
    """What a host offers its in-process plugins: here, their state."""

    def __init__(self):
        self.state = {}

    def state_get(self, key):
        return self.state.get(key)


class Plugin:
    @hookimpl
    def bench_echo(self, x):
        return x + 1

    @hookimpl
    def bench_payload(self, data):
        return data

    @hookimpl
    def bench_nested(self, host, x):
        host.state_get("k")
        return x + 1


def manager(n):
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(Spec)
    for i in range(n):
        pm.register(Plugin(), name=f"plugin{i}")
    return pm


def per_call(fn, budget=0.5):
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(number, int(number * budget / 0.2))
    return statistics.median(timer.repeat(repeat=7, number=number)) / number * 1e9


def emit(key, value):
    print(f"{key} {value:.0f}", flush=True)


COLD_CHILD = """
import pluggy
hookspec = pluggy.HookspecMarker("bench")
hookimpl = pluggy.HookimplMarker("bench")
class Spec:
    @hookspec
    def bench_echo(self, x):
        pass
class Plugin:
    @hookimpl
    def bench_echo(self, x):
        return x + 1
pm = pluggy.PluginManager("bench")
pm.add_hookspecs(Spec)
pm.register(Plugin())
print(pm.hook.bench_echo(x=1)[0], flush=True)
import sys
sys.stdin.read()
"""

MEMORY_CHILD = """
import gc, sys
import pluggy
hookspec = pluggy.HookspecMarker("bench")
hookimpl = pluggy.HookimplMarker("bench")
class Spec:
    @hookspec
    def bench_echo(self, x):
        pass
def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
def plugin_class(i):
    def bench_echo(self, x):
        return x + 1
    return type(f"Plugin{i}", (), {"bench_echo": hookimpl(bench_echo)})
pm = pluggy.PluginManager("bench")
pm.add_hookspecs(Spec)
pm.register(plugin_class(0)(), name="plugin0")
assert pm.hook.bench_echo(x=1) == [2]
gc.collect()
one = rss()
n = int(sys.argv[1])
for i in range(1, n + 1):
    pm.register(plugin_class(i)(), name=f"plugin{i}")
assert len(pm.hook.bench_echo(x=1)) == n + 1
gc.collect()
print(one, (rss() - one) / n, flush=True)
"""


def main():
    pm = manager(1)
    hook = pm.hook
    assert hook.bench_echo(x=1) == [2]
    emit("pluggy_call", per_call(lambda: hook.bench_echo(x=1)))

    host = Host()
    assert hook.bench_nested(host=host, x=1) == [2]
    emit("pluggy_nested", per_call(lambda: hook.bench_nested(host=host, x=1)))

    payload = "A" * PAYLOAD_BYTES
    assert hook.bench_payload(data=payload) == [payload]
    emit("pluggy_payload", per_call(lambda: hook.bench_payload(data=payload)))

    for n in (1, 10, 100):
        fan = manager(n).hook
        assert fan.bench_echo(x=1) == [2] * n
        emit(f"pluggy_fanout_{n}", per_call(lambda: fan.bench_echo(x=1)))

    samples = []
    for _ in range(COLD_STARTS + 1):
        start = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-c", COLD_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        answer = child.stdout.readline()
        samples.append((time.perf_counter() - start) * 1e9)
        child.kill()
        child.wait()
        assert answer.strip() == b"2", answer
    emit("pluggy_cold", statistics.median(samples[1:]))

    out = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, "1000"], capture_output=True, check=True, text=True
    ).stdout.split()
    emit("pluggy_mem_process", float(out[0]))
    emit("pluggy_mem_per_plugin", float(out[1]))


if __name__ == "__main__":
    main()
