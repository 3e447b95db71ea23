"""Prints what azure-ai-ml makes of keyless's answers, as `az ml` would print them:
the entities' own dictionaries (workspace, computes, datastores) as one JSON object."""

import json
import sys

from azure.ai.ml import MLClient
from azure.identity import DefaultAzureCredential

sub, rg, ws = sys.argv[1:4]
ml_client = MLClient(DefaultAzureCredential(), sub, rg, ws)
out = {
    "workspace": ml_client.workspaces.get(ws)._to_dict(),
    "computes": {c.name: c._to_dict() for c in ml_client.compute.list()},
    "datastores": {d.name: d._to_dict() for d in ml_client.datastores.list()},
}
print(json.dumps(out, default=str))
