"""Run the provider simulator in the foreground: `python -m scholar_pipeline.simulator --port 8900`."""

import argparse
import sys
import time
from pathlib import Path

from scholar_pipeline.simulator import Corpus, ProviderSimulator
from scholar_pipeline.simulator.server import PLACEHOLDER_KEYS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-per-day", type=int, default=240)
    parser.add_argument("--request-log", type=Path, help="append every request here as JSON lines")
    parser.add_argument("--faults", metavar="SPEC", help="inject faults, e.g. crossref:503@2x2,openalex:reset (see simulator/faults.py)")
    args = parser.parse_args()
    try:
        simulator = ProviderSimulator(args.port, Corpus(args.seed, args.max_per_day), log_file=args.request_log, faults=args.faults)
    except ValueError as error:
        parser.error(str(error))
    with simulator as sim:
        print("Provider simulator on 127.0.0.1; point the pipeline at it with:")
        for name, value in (sim.environ() | PLACEHOLDER_KEYS).items():
            print(f"  export {name}={value}")
        sys.stdout.flush()  # read at once by whoever started it, also through a pipe
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
