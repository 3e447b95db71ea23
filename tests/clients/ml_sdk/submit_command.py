"""An Azure ML v2 SDK script as its users write it: an identity-based datastore, a command
job with local code and a datastore input, read as the submitting user, then streamed.
Nothing in it knows about keyless; the environment points the SDK there.

usage: submit_command.py SUBSCRIPTION RESOURCE_GROUP WORKSPACE ACCOUNT [managed [CLIENT_ID]]"""

import sys

from azure.ai.ml import Input, MLClient, command
from azure.ai.ml.entities import AzureBlobDatastore, ManagedIdentityConfiguration, UserIdentityConfiguration
from azure.identity import DefaultAzureCredential

subscription, group, workspace, account = sys.argv[1:5]
mode = sys.argv[5] if len(sys.argv) > 5 else "user"
compute = sys.argv[6] if len(sys.argv) > 6 else "cpu-cluster"
client_id = sys.argv[7] if len(sys.argv) > 7 else None

ml_client = MLClient(DefaultAzureCredential(), subscription, group, workspace)

store = AzureBlobDatastore(
    name="mydata",
    description="Census extract, read with each job's identity",
    account_name=account,
    container_name="data",
)
ml_client.datastores.create_or_update(store)

identity = UserIdentityConfiguration() if mode == "user" else ManagedIdentityConfiguration(client_id=client_id)
job = command(
    code="./src",
    command="python3 summarize.py --data ${{inputs.census}} --epochs 3",
    inputs={"census": Input(type="uri_file", path="azureml://datastores/mydata/paths/census.csv")},
    environment="azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest",
    compute=compute,
    identity=identity,
    display_name="census-summary",
    experiment_name="census",
)
returned = ml_client.jobs.create_or_update(job)
print(f"submitted {returned.name}", flush=True)
ml_client.jobs.stream(returned.name)
final = ml_client.jobs.get(returned.name)
print(f"final status {final.status}", flush=True)
