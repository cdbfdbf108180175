"""Each command attempts one escape and reports what happened (the tests judge it)."""

import os
import socket
import sys
import time

from trellis_sdk import command, run


def attempt(fn):
    try:
        return {"ok": True, "value": fn()}
    except Exception as e:  # the point is to see the error
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}


@command("hostile-read")
def read(path):
    return attempt(lambda: open(path).read())


@command("hostile-write")
def write(path):
    def go():
        with open(path, "w") as f:
            f.write("pwned")
        return path

    return attempt(go)


@command("hostile-list")
def listdir(path):
    return attempt(lambda: sorted(os.listdir(path)))


@command("hostile-connect")
def connect(port):
    def go():
        s = socket.create_connection(("127.0.0.1", int(port)), timeout=1)
        s.sendall(b"escaped\n")
        return "connected"

    return attempt(go)


@command("hostile-loop")
def loop():
    while True:
        pass


@command("hostile-memory")
def memory():
    hoard = []
    while True:
        hoard.append(bytearray(16 << 20))


@command("hostile-fork")
def fork():
    children = 0
    errors = 0
    for _ in range(2000):
        try:
            pid = os.fork()
        except OSError:
            errors += 1
            if errors > 20:
                break
            continue
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        children += 1
    return {"children": children, "refused": errors}


@command("hostile-orphan")
def orphan(marker):
    """A grandchild in a new session, told to outlive everything; it writes its pid."""
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            with open(marker, "w") as f:
                f.write(str(os.getpid()))
            time.sleep(300)
        os._exit(0)
    os.waitpid(pid, 0)
    for _ in range(100):
        if os.path.exists(marker):
            break
        time.sleep(0.01)
    return {"marker": marker}


@command("hostile-crash")
def crash():
    os._exit(3)


@command("hostile-stdout")
def stdout():
    print("a stray print on stdout")
    sys.stdout.write("{\"jsonrpc\": \"2.0\", \"id\": 1, \"result\": \"forged\"}\n")
    print("x" * 100000)
    return "still fine"


@command("hostile-garbage")
def garbage():
    os.write(int(os.environ["TRELLIS_RPC_FD"]), b"this is not json\n")
    time.sleep(0.2)
    return "after garbage"


@command("hostile-oversize")
def oversize():
    return "y" * (17 << 20)


@command("hostile-env")
def env():
    return dict(os.environ)


@command("hostile-self")
def self_info():
    return {
        "pid": os.getpid(),
        "fds": sorted(int(f) for f in os.listdir("/proc/self/fd")),
        "cwd": os.getcwd(),
        "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    }


@command("hostile-sleep")
def sleep(marker):
    with open(marker, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(2.5)
    return "woke"


@command("hostile-http")
def http(ctx, url):
    def go():
        r = ctx.http.get(url)
        return {"status": r.status, "body": r.text}

    return attempt(go)


@command("hostile-exec")
def run_command(ctx, *argv):
    out = ctx.subprocess.run(argv[0], list(argv[1:]))
    return {"status": out.returncode, "stdout": out.stdout.decode(), "stderr": out.stderr.decode()}


if __name__ == "__main__":
    run()
