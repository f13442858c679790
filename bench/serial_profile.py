#!/usr/bin/env python3
"""Where a Burn Flex run works on one thread: records a command with `perf` (DWARF call
graphs) and counts the samples of its calling thread that lie outside rayon's parallel
regions, by the nearest model-side frame (`dit_layers`, `models_*`, `vae`, `text_encoders`)
and by leaf function. On two cores every such sample is time the other core sits idle;
this is how the single-threaded copies behind the forwards' gap to PyTorch were found
(README, Benchmarks).

Samples of weight initialisation (random weights of the forward benchmarks) are left out.
Needs Linux `perf` with DWARF unwinding and a release build; standard library only.

  python3 bench/serial_profile.py -- ./target/release/xtask bench flux-forward --no-torch \\
      --repeat 3 --warmup 1 --out /tmp/bench
"""

import argparse
import collections
import re
import subprocess
import sys
import tempfile
from pathlib import Path

MODEL_FRAME = re.compile(r"^<?(dit_layers|models_\w+|vae|text_encoders|burn_flex::ops)::")
INIT = ("random", "Initializer", "Distribution")


def clean(symbol: str) -> str:
    """A symbol without generic arguments, cut to 90 characters."""
    while True:
        shorter = re.sub(r"<[^<>]*>", "", symbol)
        if shorter == symbol:
            return symbol[:90]
        symbol = shorter


def samples(data: Path, tid: int):
    """The call stacks (leaf first) of thread `tid` in the recording `data`."""
    script = subprocess.run(["perf", "script", "-i", str(data), "--tid", str(tid),
                             "-F", "ip,sym"], capture_output=True, text=True, check=True)
    for block in script.stdout.split("\n\n"):
        frames = [line.strip().split(" ", 1) for line in block.strip().splitlines()]
        stack = [f[1] for f in frames if len(f) == 2]
        if stack:
            yield stack


def main_thread(data: Path) -> int:
    """The lowest thread id of the recorded process: its calling thread."""
    report = subprocess.run(["perf", "report", "-i", str(data), "--sort", "pid", "--stdio",
                             "--no-children", "-g", "none"],
                            capture_output=True, text=True, check=True)
    tids = [int(m.group(1)) for m in re.finditer(r"^\s+[\d.]+%\s+(\d+):", report.stdout,
                                                 re.MULTILINE)]
    if not tids:
        sys.exit("no samples recorded")
    return min(tids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frequency", type=int, default=499, help="samples per second")
    parser.add_argument("--top", type=int, default=20, help="rows per table")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to profile")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "perf.data"
        subprocess.run(["perf", "record", "-q", "-F", str(args.frequency), "--call-graph",
                        "dwarf,16384", "-o", str(data), "--", *command], check=True)
        parallel, init = 0, 0
        by_op, by_leaf = collections.Counter(), collections.Counter()
        for stack in samples(data, main_thread(data)):
            if any(word in frame for frame in stack for word in INIT):
                init += 1
            elif any("rayon" in frame for frame in stack):
                parallel += 1
            else:
                op = next((clean(f) for f in stack if MODEL_FRAME.match(f)), "(other)")
                by_op[op] += 1
                by_leaf[clean(stack[0])] += 1
    serial = sum(by_op.values())
    print(f"calling thread: {serial} samples on one thread, {parallel} inside parallel "
          f"regions, {init} initialising weights ({args.frequency} per second)")
    for title, counts in (("by operation", by_op), ("by leaf function", by_leaf)):
        print(f"\n{title}:")
        for name, n in counts.most_common(args.top):
            print(f"{n:7d}  {name}")


if __name__ == "__main__":
    main()
