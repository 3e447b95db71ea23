"""Counts the rows of the census extract and prints the mean age."""

import argparse
import csv

parser = argparse.ArgumentParser()
parser.add_argument("--data", required=True)
args = parser.parse_args()

with open(args.data, newline="") as f:
    rows = list(csv.DictReader(f))
ages = [int(r["age"]) for r in rows if r.get("age", "").isdigit()]
print(f"census rows: {len(rows)}")
print(f"census mean age: {sum(ages) / max(len(ages), 1):.1f}")
