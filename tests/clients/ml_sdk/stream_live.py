"""A command job that prints a line, works for a while, then prints another, followed with
`jobs.stream` as its users do. Nothing in it knows about keyless.

usage: stream_live.py SUBSCRIPTION RESOURCE_GROUP WORKSPACE PAUSE_SECONDS"""

import sys

from azure.ai.ml import MLClient, command
from azure.identity import DefaultAzureCredential

subscription, group, workspace, pause = sys.argv[1:5]
ml_client = MLClient(DefaultAzureCredential(), subscription, group, workspace)
job = command(
    command=f"echo first-line; sleep {pause}; echo second-line",
    environment="azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest",
    compute="cpu-cluster",
    display_name="stream-live",
)
returned = ml_client.jobs.create_or_update(job)
print(f"submitted {returned.name}", flush=True)
ml_client.jobs.stream(returned.name)
print("streamed", flush=True)
