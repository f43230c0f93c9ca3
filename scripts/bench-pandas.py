#!/usr/bin/env python3
"""The team roll-up of a Confluent cost-allocation export, done with pandas.

What an analyst would otherwise run: read the export and the crosswalk, join on
owner_id, sum chargeback_cost per team (owners without a team under
"(unmatched)"), and reconcile the total. It reads the files that
`cargo bench --bench allocate -- --dir DIR` generated, so both tools process the
same bytes, and prints rows/s, MiB/s and peak memory in the same shape as the
Rust benchmark.

    python scripts/bench-pandas.py DIR            # DIR/export.csv, DIR/crosswalk.csv
    python scripts/bench-pandas.py EXPORT.csv CROSSWALK.csv
"""

import os
import resource
import sys
import time
from decimal import Decimal


def main(argv):
    if len(argv) == 2 and os.path.isdir(argv[1]):
        export = os.path.join(argv[1], "export.csv")
        crosswalk = os.path.join(argv[1], "crosswalk.csv")
    elif len(argv) == 3:
        export, crosswalk = argv[1], argv[2]
    else:
        print(__doc__, file=sys.stderr)
        return 2
    import pandas as pd

    started = time.perf_counter()
    cpu_started = time.process_time()
    rows = pd.read_csv(export, dtype={"owner_id": "string", "chargeback_cost": "string"})
    teams = pd.read_csv(crosswalk, dtype="string")
    # Money is summed exactly: cents as integers (floats would drift).
    cents = rows["chargeback_cost"].str.replace(".", "", regex=False).astype("int64")
    rows = rows.assign(cents=cents)
    joined = rows.merge(teams[["owner_id", "team"]], on="owner_id", how="left")
    joined["team"] = joined["team"].fillna("(unmatched)")
    by_team = joined.groupby("team", sort=True)["cents"].sum()
    elapsed = time.perf_counter() - started
    cpu = max(time.process_time() - cpu_started, 0.01)
    total = Decimal(int(by_team.sum())) / 100
    size_mib = (os.path.getsize(export) + os.path.getsize(crosswalk)) / 1048576
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = len(rows)
    print(
        f"pandas team roll-up: {n} rows, {size_mib:.1f} MiB: wall {elapsed:.2f}s, CPU {cpu:.2f}s; "
        f"{n / elapsed / 1e6:.2f} M rows/s and {size_mib / elapsed:.0f} MiB/s per wall second, "
        f"{n / cpu / 1e6:.2f} M rows/s and {size_mib / cpu:.0f} MiB/s per CPU second; "
        f"{len(by_team)} teams, total {total}; peak memory {peak_mib:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
