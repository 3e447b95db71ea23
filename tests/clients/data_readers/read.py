"""A notebook user's in-process reads, unchanged: azureml-fsspec, pandas and mltable on
azureml:// URIs, with the environment `keyless env` gives after `keyless login`.
    python read.py <subscription> <resource group> <workspace>
Prints what each reader saw, then `READ OK`."""

import sys

import mltable
import pandas as pd
from azureml.fsspec import AzureMachineLearningFileSystem

sub, rg, ws = sys.argv[1:4]
base = f"azureml://subscriptions/{sub}/resourcegroups/{rg}/workspaces/{ws}/datastores/mydata/paths/"
fs = AzureMachineLearningFileSystem(base)
print("LS", sorted(p.rsplit("/", 1)[-1] for p in fs.ls("")))
with fs.open("census.csv") as f:
    print("OPEN", f.read().decode().splitlines()[0])
print("PANDAS", len(pd.read_csv(base + "census.csv")))
table = mltable.from_delimited_files(paths=[{"file": base + "census.csv"}])
print("MLTABLE", len(table.to_pandas_dataframe()))
print("READ OK")
