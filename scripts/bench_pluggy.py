#!/usr/bin/env python3
"""pluggy baseline for crates/trellis-core/benches/hook_dispatch.rs.

Same shape: one hook, 1/10/100 plain implementations, payload x=1, each returning x + 1.
The hook caller is looked up once, as the Rust bench holds its HookCaller.
Prints one line per size: "<impls> <ns per call>", the median of several timeit repeats
(the same statistic the Rust side reports from criterion).
"""
import statistics
import sys
import timeit

import pluggy

hookspec = pluggy.HookspecMarker("bench")
hookimpl = pluggy.HookimplMarker("bench")


class Spec:
    @hookspec
    def myhook(self, x):
        pass


class Plugin:
    @hookimpl
    def myhook(self, x):
        return x + 1


def main() -> None:
    budget = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5  # seconds per repeat
    for n in (1, 10, 100):
        pm = pluggy.PluginManager("bench")
        pm.add_hookspecs(Spec)
        for i in range(n):
            pm.register(Plugin(), name=f"plugin{i}")
        hook = pm.hook.myhook
        assert hook(x=1) == [2] * n
        timer = timeit.Timer(lambda: hook(x=1))
        number, _ = timer.autorange()
        number = max(number, int(number * budget / 0.2))
        median = statistics.median(timer.repeat(repeat=7, number=number)) / number
        print(f"{n} {median * 1e9:.1f}", flush=True)


if __name__ == "__main__":
    main()
