#!/usr/bin/env python3
"""The roll-ups of `benches/allocate.rs`, done with pandas on the same files.

What an analyst or a home-grown Python pipeline would otherwise run, in exact
integer cents (floats would drift), printed in the shape of the Rust benchmark
(rows/s, MiB/s, peak memory) so `scripts/bench allocate` shows them side by side:

1. export team roll-up: read the Confluent export and the crosswalk, join on
   owner_id, sum chargeback_cost per team (owners without a team under
   "(unmatched)"). Less than tally does.
2. export, same report as tally: what `tally allocate` builds from the same
   input: one row per monthly bucket x owner x environment x resource x product
   x line type x unit (amounts summed), each with its line's total
   (original_amount) and the owner's share of it; then the team totals.
3. bill + usage, parts only: the usage CSV summed per day x cluster x
   principal x metric, each bill line split over the principals active on its
   cluster that day by tally's default Kafka rules (network write by produced
   bytes, read by consumed bytes, CKUs 70% by bytes in + out and 30% evenly,
   the rest evenly), in cents by largest remainder (ties to the smaller
   principal id). The CKU line is split in one step by its exact mixed weight
   where tally splits 70/30 first, so one principal's cents can differ by one;
   every line's parts sum to it in both. Less than tally does.
4. bill + usage + crosswalk, same report as tally: those parts, each with its
   share of its line's usage, then the team totals through the crosswalk (as
   roll-up 2 ends).

Each roll-up runs `--repeat` times (default 3, as the Rust benchmark) and the
run with the median wall time is printed, with the range of the others. Peak
memory is the process's, so it only grows from one roll-up to the next. With
`--against FILE` (the Rust benchmark's output in the same run), the ratios of
tally's rows/s to pandas' follow, per wall and per CPU second.

    python scripts/bench-pandas.py DIR [--against FILE] [--repeat N]   # the files `--dir DIR` generated
    python scripts/bench-pandas.py --summary FILE...   # median ratios over rounds (files of --against runs)
"""

import os
import re
import resource
import sys
import time
from decimal import Decimal

DAY = "%Y-%m-%dT%H:%M:%SZ"


def cents_of(text):
    """Amounts written with two decimals (as the generator does), in cents."""
    return text.str.replace(".", "", regex=False).astype("int64")


def read_export(pd, directory):
    """The export with its amounts in integer cents, and the crosswalk."""
    rows = pd.read_csv(
        os.path.join(directory, "export.csv"),
        dtype={"owner_id": "string", "chargeback_cost": "string"},
    )
    teams = pd.read_csv(os.path.join(directory, "crosswalk.csv"), dtype="string")
    rows = rows.assign(cents=cents_of(rows["chargeback_cost"]))
    return rows.drop(columns=["chargeback_cost"]), teams


def by_team(rows, teams):
    """Cents per team, owners without a team under "(unmatched)"."""
    joined = rows.merge(teams[["owner_id", "team"]], on="owner_id", how="left")
    joined["team"] = joined["team"].fillna("(unmatched)")
    return joined.groupby("team", sort=True)["cents"].sum()


def export_team_totals(pd, directory):
    rows, teams = read_export(pd, directory)
    totals = by_team(rows, teams)
    return len(rows), totals.sum(), f"{len(totals)} teams"


def export_same_report(pd, directory):
    rows, teams = read_export(pd, directory)
    stamps = pd.to_datetime(rows["timestamp"], format=DAY, utc=True)
    rows["bucket"] = stamps.dt.tz_localize(None).dt.to_period("M").dt.start_time
    keys = ["bucket", "product", "line_type", "resource_id", "environment_id", "owner_id", "unit"]
    report = rows.groupby(keys, sort=True, observed=True)["cents"].sum().reset_index()
    line = ["bucket", "resource_id", "product", "line_type"]
    report["original_cents"] = report.groupby(line, sort=False)["cents"].transform("sum")
    report["usage_share"] = (report["cents"] / report["original_cents"]).round(6)
    totals = by_team(report, teams)
    return len(rows), totals.sum(), f"{len(report)} output rows, {len(totals)} teams"


def largest_remainder(parts):
    """Each part's cents of its line: `line_cents * weight / line_weight` rounded
    down, the cents left over to the largest remainders (ties: principal id)."""
    product = parts["line_cents"] * parts["weight"]
    parts["cents"] = product // parts["line_weight"]
    parts["remainder"] = product % parts["line_weight"]
    left = parts["line_cents"] - parts.groupby("line", sort=False)["cents"].transform("sum")
    parts = parts.sort_values(["line", "remainder", "principal"], ascending=[True, False, True])
    rank = parts.groupby("line", sort=False).cumcount()
    parts["cents"] += (rank < left.loc[parts.index]).astype("int64")
    return parts


def allocate_bill(pd, directory):
    """(bill lines, usage rows, the allocated parts) of roll-up 3."""
    bill = pd.read_csv(os.path.join(directory, "bill.csv"), dtype={"amount": "string"})
    usage = pd.read_csv(os.path.join(directory, "usage.csv"))
    usage["day"] = pd.to_datetime(usage["bucket_start"], format=DAY).dt.floor("D")
    used = (
        usage.groupby(["day", "cluster", "principal", "metric"], sort=False)["value"]
        .sum()
        .unstack("metric", fill_value=0)
        .reset_index()
    )
    bill["day"] = pd.to_datetime(bill["start_date"], format=DAY)
    bill["line_cents"] = cents_of(bill["amount"])
    bill["line"] = range(len(bill))
    parts = bill[["line", "day", "resource_id", "line_type", "line_cents"]].merge(
        used, left_on=["day", "resource_id"], right_on=["day", "cluster"]
    )
    produced, consumed = parts["produced_bytes"], parts["consumed_bytes"]
    line_sum = lambda values: values.groupby(parts["line"]).transform("sum")
    active = parts.groupby("line")["principal"].transform("size")
    both = produced + consumed
    # CKUs: 0.7 * bytes / line bytes + 0.3 / active, over one integer denominator.
    weights = {
        "KafkaNetworkWrite": (produced, line_sum(produced)),
        "KafkaNetworkRead": (consumed, line_sum(consumed)),
        "KafkaNumCKUs": (7 * both * active + 3 * line_sum(both), 10 * line_sum(both) * active),
    }
    parts["weight"], parts["line_weight"] = 1, active
    for line_type, (weight, total) in weights.items():
        mine = parts["line_type"] == line_type
        parts.loc[mine, "weight"] = weight[mine]
        parts.loc[mine, "line_weight"] = total[mine]
    parts = parts[parts["weight"] > 0].copy()
    return bill, usage, largest_remainder(parts)


def bill_and_usage(pd, directory):
    bill, usage, parts = allocate_bill(pd, directory)
    rows = parts[parts["cents"] != 0]
    counted = len(bill) + len(usage)
    return counted, rows["cents"].sum(), f"{len(rows)} output rows"


def bill_and_usage_same_report(pd, directory):
    bill, usage, parts = allocate_bill(pd, directory)
    rows = parts[parts["cents"] != 0].rename(columns={"principal": "owner_id"})
    rows["usage_share"] = rows["weight"] / rows["line_weight"]
    teams = pd.read_csv(os.path.join(directory, "crosswalk.csv"), dtype="string")
    totals = by_team(rows, teams)
    counted = len(bill) + len(usage)
    return counted, totals.sum(), f"{len(rows)} output rows, {len(totals)} teams"


def rates(line):
    """(M rows/s per wall second, per CPU second) of a benchmark line."""
    found = re.search(r"([0-9.]+) M rows/s and [0-9]+ MiB/s per wall second, ([0-9.]+) M rows/s", line)
    return (float(found.group(1)), float(found.group(2))) if found else None


def print_ratios(tally_lines, pandas_lines):
    """tally's rows/s over pandas' for each tally line, against the pandas
    roll-up that does the same work (each input's same report)."""
    baselines = {
        "confluent export + crosswalk": pandas_lines.get("export, same report as tally"),
        "bill + usage + crosswalk (daily)": pandas_lines.get(
            "bill + usage + crosswalk (daily), same report as tally"
        ),
    }
    for line in tally_lines:
        name = line.split(":", 1)[0]
        phase = name.rsplit(" (", 1)[0]
        ours, theirs = rates(line), rates(baselines.get(phase) or "")
        if ours and theirs:
            print(
                f"ratio {name} / pandas: {ours[0] / theirs[0]:.2f}x per wall second "
                f"({ours[0]:.2f} / {theirs[0]:.2f} M rows/s), "
                f"{ours[1] / theirs[1]:.2f}x per CPU second"
            )


RATIO = re.compile(
    r"ratio (.+) / pandas: ([0-9.]+)x per wall second \(([0-9.]+) / ([0-9.]+) M rows/s\), ([0-9.]+)x per CPU second"
)


def print_summary(paths):
    """The median (and range) over rounds of each ratio line in `paths`: tally
    and pandas alternate, so each round's ratio compares neighbours in time."""
    found = {}
    for path in paths:
        with open(path) as f:
            for match in filter(None, map(RATIO.match, f)):
                found.setdefault(match.group(1), []).append([float(g) for g in match.groups()[1:]])
    median = lambda values: sorted(values)[len(values) // 2]
    for name, rounds in found.items():
        wall, ours, theirs, cpu = (list(column) for column in zip(*rounds))
        print(
            f"median of {len(rounds)} rounds, {name} / pandas: {median(wall):.2f}x per wall second "
            f"(range {min(wall):.2f}-{max(wall):.2f}x; tally {median(ours):.2f}, pandas {median(theirs):.2f} M rows/s), "
            f"{median(cpu):.2f}x per CPU second"
        )


def run(pd, directory, name, roll_up, size_mib):
    """(wall seconds, the line that reports one run of `roll_up`)."""
    started = time.perf_counter()
    cpu_started = time.process_time()
    n, cents, detail = roll_up(pd, directory)
    elapsed = time.perf_counter() - started
    cpu = max(time.process_time() - cpu_started, 0.01)
    total = Decimal(int(cents)) / 100
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return elapsed, (
        f"pandas {name}: {n} rows, {size_mib:.1f} MiB: wall {elapsed:.2f}s, CPU {cpu:.2f}s; "
        f"{n / elapsed / 1e6:.2f} M rows/s and {size_mib / elapsed:.0f} MiB/s per wall second, "
        f"{n / cpu / 1e6:.2f} M rows/s and {size_mib / cpu:.0f} MiB/s per CPU second; "
        f"{detail}, total {total}; peak memory {peak_mib:.0f} MiB"
    )


def options(args):
    """(directory, --against file or None, --repeat count), or None when unusable."""
    flags = {"--against": None, "--repeat": "3"}
    positional = []
    while args:
        arg = args.pop(0)
        if arg in flags and args:
            flags[arg] = args.pop(0)
        else:
            positional.append(arg)
    if len(positional) != 1 or not os.path.isdir(positional[0]) or not flags["--repeat"].isdigit():
        return None
    return positional[0], flags["--against"], max(int(flags["--repeat"]), 1)


def main(argv):
    if argv[1:2] == ["--summary"]:
        print_summary(argv[2:])
        return 0
    parsed = options(argv[1:])
    if parsed is None:
        print(__doc__, file=sys.stderr)
        return 2
    import pandas as pd

    directory, against, repeat = parsed
    size = lambda *names: sum(os.path.getsize(os.path.join(directory, n)) for n in names) / 1048576
    roll_ups = (
        ("export team roll-up", export_team_totals, size("export.csv", "crosswalk.csv")),
        ("export, same report as tally", export_same_report, size("export.csv", "crosswalk.csv")),
        ("bill + usage (daily), parts only", bill_and_usage, size("bill.csv", "usage.csv")),
        (
            "bill + usage + crosswalk (daily), same report as tally",
            bill_and_usage_same_report,
            size("bill.csv", "usage.csv", "crosswalk.csv"),
        ),
    )
    printed = {}
    for name, roll_up, size_mib in roll_ups:
        runs = sorted((run(pd, directory, name, roll_up, size_mib) for _ in range(repeat)), key=lambda r: r[0])
        line = runs[len(runs) // 2][1]
        if repeat > 1:
            line += f" [median of {repeat} runs; wall {runs[0][0]:.2f}-{runs[-1][0]:.2f}s]"
        printed[name] = line
        print(line, flush=True)
    if against:
        with open(against) as f:
            print_ratios([l for l in f if rates(l)], printed)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
