"""Echo hooks for scripts/bench-process.sh, written with the SDK (docs/python.md)."""

from trellis_sdk import Context, hook, run


@hook("bench_echo")
def bench_echo(x: int) -> int:
    return x + 1


@hook("bench_payload")
def bench_payload(data: str) -> str:
    return data


@hook("bench_nested")
def bench_nested(ctx: Context, x: int) -> int:
    ctx.state.get("k")  # a call to the host, answered before this hook answers
    return x + 1


if __name__ == "__main__":
    run()
