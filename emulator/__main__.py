"""python -m emulator --scenario FILE [--port N] [--env-file PATH] [--profile field]: serve
until killed."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from emulator.latency import PROFILES
from emulator.server import Emulator

DEFAULT_SCENARIO = Path(__file__).resolve().parent / "scenarios" / "default.json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    ap.add_argument("--scenario", default=str(DEFAULT_SCENARIO), help="scenario JSON file")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="ARM HTTPS port (0: any free port)")
    ap.add_argument("--env-file", help="write KEY=VALUE lines for clients here once listening")
    ap.add_argument("--page-size", type=int, default=100)
    ap.add_argument("--lro-retry-after", type=int, default=1,
                    help="Retry-After seconds on running operations (ARM sends one; without it "
                    "SDK pollers wait their 30 s default)")
    ap.add_argument("--profile", default="off", choices=["off", *PROFILES],
                    help="latency profile: 'field' answers at field latency, with LRO "
                    "Retry-After and durations and ARM/Compute throttling "
                    "(docs/latency-profile.md); default off")
    args = ap.parse_args(argv)

    emu = Emulator(args.scenario, host=args.host, port=args.port, page_size=args.page_size,
                   lro_retry_after=args.lro_retry_after, profile=args.profile)
    emu.start()
    lines = "".join(f"{k}={v}\n" for k, v in emu.env().items())
    if args.env_file:
        tmp = f"{args.env_file}.tmp"
        Path(tmp).write_text(lines)
        os.replace(tmp, args.env_file)  # readers never see a half-written file
    print(f"ARM emulator on {emu.base_url} (scenario {args.scenario})", flush=True)
    print(lines, end="", flush=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
