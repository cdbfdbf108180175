"""UC-1: scan for hard-coded secrets, one backlog task per finding, one event per scan.

Files are read with plain `open()`: the sandbox lets the process read exactly what
`filesystem.read` grants (here the whole project, never `.trellis/`)."""

import os
import re

from trellis_sdk import Context, argument, command, on, option, run

PATTERNS = [
    ("aws-access-key", re.compile(r"AKIA[0-9A-Z]{16}")),
    ("private-key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("password-assignment", re.compile(r"(?i)password\s*=\s*['\"][^'\"]{4,}['\"]")),
]


def scan(root, exclude):
    findings = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in exclude and d != ".trellis")
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    for number, line in enumerate(f, 1):
                        for rule, pattern in PATTERNS:
                            if pattern.search(line):
                                findings.append({"rule": rule, "path": rel, "line": number})
            except OSError:
                continue
    return findings


@command("security-scan-py")
@argument("paths", type="list", items="path", required=False,
          help="Project-relative files or directories to scan instead of the whole project")
@option("--dry-run", help="Report the findings without creating backlog tasks")
def security_scan(ctx: Context, paths: list = (), dry_run: bool = False):
    exclude = set(ctx.config.get("exclude", []))
    roots = list(paths) or ["."]
    findings = [f for root in roots for f in scan(root, exclude)]
    tasks = []
    if not dry_run:
        for f in findings:
            task = ctx.backlog.create_task(
                title=f"[Security] {f['rule']} in {f['path']}:{f['line']}",
                labels=["security", f["rule"]],
                description=f"A possible secret ({f['rule']}) at {f['path']} line {f['line']}.",
            )
            tasks.append(task.id)
    ctx.events.emit(
        "plugin.security.scan.completed",
        {"findings_count": len(findings), "tasks": tasks},
    )
    return {"findings": findings, "tasks": tasks}


@on("workflow.implement.completed")
def after_implement(ctx: Context, payload):
    ctx.log.info(f"implement completed; run `trellis security-scan-py` to check it ({payload})")


if __name__ == "__main__":
    run()
