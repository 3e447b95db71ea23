"""Submits an `az ml` job file with the SDK (`load_job`), then streams it.

usage: submit_yaml.py SUBSCRIPTION RESOURCE_GROUP WORKSPACE JOB_YAML"""

import sys

from azure.ai.ml import MLClient, load_job
from azure.identity import DefaultAzureCredential

subscription, group, workspace, path = sys.argv[1:5]
ml_client = MLClient(DefaultAzureCredential(), subscription, group, workspace)
job = load_job(path)
returned = ml_client.jobs.create_or_update(job)
print(f"submitted {returned.name}", flush=True)
ml_client.jobs.stream(returned.name)
print(f"final status {ml_client.jobs.get(returned.name).status}", flush=True)
