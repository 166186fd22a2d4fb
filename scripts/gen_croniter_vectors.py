#!/usr/bin/env python3
"""Generate next-fire vectors from croniter (the engine Apache Airflow uses).

Writes core/tests/data/croniter_vectors.tsv, one vector a line:

    expression <TAB> IANA zone <TAB> start (RFC3339, UTC) <TAB> next fire times (RFC3339, UTC, space-separated)

`core/tests/cron_vectors.rs` checks that `Schedule::next_after`, chained from the start,
agrees with every vector exactly.

Vectors whose fire times come near a daylight-saving transition are left out on purpose:
there nightshift follows its own written policy (docs/schedules.md), not croniter's.
A vector is dropped when the expression matches any wall-clock minute inside the
repeated or skipped hour of a transition between the start and the last fire time.

Usage (installs croniter into a throwaway venv):

    python3 -m venv /tmp/cv && /tmp/cv/bin/pip install croniter pytz
    /tmp/cv/bin/python scripts/gen_croniter_vectors.py
"""

import bisect
import datetime as dt
import os
import sys

import pytz
from croniter import croniter

FIRES_PER_VECTOR = 6

EXPRESSIONS = [
    # plain values, lists, ranges, steps
    "* * * * *",
    "*/5 * * * *",
    "*/7 * * * *",
    "*/13 */5 * * *",
    "0 * * * *",
    "15 * * * *",
    "5,10,15 * * * *",
    "0-10/3 * * * *",
    "10/20 * * * *",
    "59/15 * * * *",
    "*/90 * * * *",
    "0 0 * * *",
    "30 3 * * *",
    "0 3 * * *",
    "45 23 * * *",
    "0 12 * * *",
    "0 6,18 * * *",
    "0 9-17 * * *",
    "0 */2 * * *",
    "0 */3 * * *",
    "0 1/3 * * *",
    "0 0-23/6 * * *",
    "23 0-20/2 * * *",
    "*/30 */4 * * *",
    "1-5 1-5 1-5 1-5 1-5",
    "0 0 1 * *",
    "0 0 15 * *",
    "0 0 30 * *",
    "0 0 31 * *",
    "0 0 29 2 *",
    "0 0 31 1,3,5 *",
    "0 0 1 1 *",
    "0 0 1,15 * *",
    "0 0 5-10/2 * *",
    "0 4 8-14 * *",
    "0 0 1 */3 *",
    "0 0 1 2/4 *",
    "0 0,12 1 */2 *",
    # names, case-insensitive
    "0 0 * JAN,JUL *",
    "0 0 1 jan-mar *",
    "0 0 * * sun",
    "5 4 * * SUN",
    "0 0 * * SUN-WED",
    "0 0 * * Mon,Wed,Fri",
    "*/15 9-17 * * MON-FRI",
    "0 9-17 * * 1-5",
    "0 0 * * 1-5/2",
    "0 8 1 dec *",
    # weekday 0 and 7 are both Sunday
    "0 0 * * 0",
    "0 0 * * 7",
    "0 0 * * 0,7",
    "0 0 * * 6,7",
    "0 0 * * 5-7",
    "0 0 * * 1-7",
    "0 0 * * 0-7",
    "0 0 * * 0-7/2",
    "0 0 * * 1-7/2",
    "0 0 * * 7,3",
    # day-of-month and day-of-week both restricted: either matches
    "0 0 1,15 * 1",
    "0 0 13 * 5",
    "0 12 1-7 * 1",
    "0 0 */2 * 1",
    "0 0 1 * */2",
    "0 0 1-31 * 1",
    "0 0 1-31 * */2",
    "0 0 * * 0-6",
    "0 0 1 * 0-6",
    "0 0 */1 * 1",
    "30 6 10-20 * SAT,SUN",
    "0 0 31 2 1",
    # last day of the month, nth weekday
    "0 0 L * *",
    "0 0 L 2 *",
    "0 0 1,L * *",
    "0 0 * * 1#1",
    "0 0 * * MON#2",
    "30 8 * * 5#3,1#1",
    "0 0 * * 0#5",
    # wrap-around ranges
    "0 22-2 * * *",
    "50-10 * * * *",
    "0 0 * * 6-1",
    "0 0 * * FRI-MON",
    "0 0 25-5 * *",
    "0 0 1 NOV-FEB *",
    # presets
    "@hourly",
    "@daily",
    "@midnight",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
]

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
]

# Start instants, each at least two days away from any transition in ZONES.
STARTS = [
    "2024-02-28T08:00:00Z",
    "2025-01-15T10:17:23Z",
    "2025-02-28T23:59:59Z",
    "2025-05-31T23:30:00Z",
    "2025-07-04T12:00:00Z",
    "2025-08-31T14:59:00Z",
    "2025-12-31T23:45:00Z",
    "2026-06-15T03:00:00Z",
]


def parse_utc(text):
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=pytz.utc)


def fmt_utc(moment):
    return moment.astimezone(pytz.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def transitions(zone, lo, hi):
    """(instant, wall-clock window start, window end) for each transition in [lo, hi]."""
    times = getattr(zone, "_utc_transition_times", None)
    if not times:
        return []
    infos = zone._transition_info
    out = []
    i = bisect.bisect_left(times, lo.replace(tzinfo=None))
    while i < len(times) and times[i] <= hi.replace(tzinfo=None):
        if i > 0:
            before = infos[i - 1][0]
            after = infos[i][0]
            t = times[i]
            if before != after:
                a, b = t + before, t + after
                out.append((t, min(a, b), max(a, b)))
        i += 1
    return out


def touches_transition(expr, zone, start, last):
    for _, wall_lo, wall_hi in transitions(zone, start - dt.timedelta(days=1), last + dt.timedelta(days=1)):
        # Naive wall-clock evaluation: does the expression match any minute in the window?
        first = croniter(expr, wall_lo - dt.timedelta(minutes=1)).get_next(dt.datetime)
        if first < wall_hi:
            return True
    return False


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out_path = os.path.join(root, "core", "tests", "data", "croniter_vectors.tsv")
    kept = dropped_dst = rejected = 0
    lines = []
    for start_text in STARTS:
        start = parse_utc(start_text)
        for name in ZONES:
            zone = pytz.timezone(name)
            for t, _, _ in transitions(zone, start - dt.timedelta(days=2), start + dt.timedelta(days=2)):
                sys.exit(f"start {start_text} is within two days of a transition in {name} at {t}")
        for expr in EXPRESSIONS:
            for name in ZONES:
                zone = pytz.timezone(name)
                try:
                    it = croniter(expr, start.astimezone(zone))
                    fires = [it.get_next(dt.datetime) for _ in range(FIRES_PER_VECTOR)]
                except Exception as err:  # croniter rejects some syntax we accept
                    print(f"croniter rejects {expr!r}: {err}", file=sys.stderr)
                    rejected += 1
                    continue
                if touches_transition(expr, zone, start, fires[-1]):
                    dropped_dst += 1
                    continue
                lines.append(
                    "\t".join([expr, name, start_text, " ".join(fmt_utc(f) for f in fires)])
                )
                kept += 1
    with open(out_path, "w") as out:
        out.write(f"# generated by scripts/gen_croniter_vectors.py with croniter {croniter_version()}\n")
        out.write("# expression\tzone\tstart\tnext fire times (UTC)\n")
        out.write("\n".join(lines) + "\n")
    print(f"{kept} vectors written to {out_path}; {dropped_dst} dropped near DST transitions; "
          f"{rejected} rejected by croniter")


def croniter_version():
    try:
        from importlib.metadata import version

        return version("croniter")
    except Exception:
        return "unknown"


if __name__ == "__main__":
    main()
