"""Summarises the census extract, then trains a toy model for a few epochs (a stand-in
for real training: it takes a few seconds, as training does)."""

import argparse
import csv
import time

parser = argparse.ArgumentParser()
parser.add_argument("--data", required=True)
parser.add_argument("--epochs", type=int, default=3)
args = parser.parse_args()

with open(args.data, newline="") as f:
    rows = list(csv.DictReader(f))
ages = [int(r["age"]) for r in rows if r.get("age", "").isdigit()]
mean = sum(ages) / max(len(ages), 1)
print(f"census rows: {len(rows)}", flush=True)
print(f"census mean age: {mean:.1f}", flush=True)

estimate = 0.0
for epoch in range(args.epochs):
    estimate += (mean - estimate) / 2
    time.sleep(1)
    print(f"epoch {epoch + 1}/{args.epochs}: estimate {estimate:.2f}", flush=True)
