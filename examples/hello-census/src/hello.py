"""Summarises the census extract the job was given: rows, columns, mean age."""

import argparse
import csv

parser = argparse.ArgumentParser()
parser.add_argument("--data", required=True)
args = parser.parse_args()

with open(args.data, newline="") as f:
    rows = list(csv.DictReader(f))

print(f"read {len(rows)} rows from {args.data}")
if rows:
    print("columns:", ", ".join(rows[0].keys()))
    ages = [int(r["age"]) for r in rows if r.get("age", "").isdigit()]
    if ages:
        print(f"mean age: {sum(ages) / len(ages):.1f}")
