"""What a job costs, on the local backend or on Slurm, in one run:

  * submit-to-running latency: a command job with no code and no inputs (`true` on a
    compute, as the submitting user) PUT to the management API; the time from just
    before the PUT to the first time the job's log endpoint reports Running (or a later
    status), polled every ~5 ms. The job's statusHistory has second resolution only, so
    the clock is the client's. Jobs run one after another; median and p90 over N, and
    the median submit-to-Completed. Target: median <= 200 ms.
  * input download throughput: a job whose one input is a 64 MiB blob (uri_file,
    mode Download, read as the submitting user through a credential-less datastore);
    the time from the first poll that sees Preparing to the first that sees Running,
    best of 3, as MB/s (10^6 bytes), against a plain bearer-token GET of the same blob
    from the storage listener, best of 3. Preparing also opens the job's identity
    endpoint, so the job figure is a slight under-estimate. Target: job / plain >= 0.9.
  * memory while a big input and output move: a job that copies a BIG_GIB GiB input to
    its output (read and written by its agent, streaming); the server's resident memory
    and the agent's, sampled every 0.2 s, before and at their peak. Target: the server's
    stays flat (the server never holds a job's bytes), the agent's bounded.

Loopback only; each loop is bounded in count and time.

    .venv/bin/python bench/jobs.py [runs] [local|slurm]    (after ./scripts/test made the venv;
                                                             slurm: after scripts/slurm up DIR,
                                                             with SLURM_CONF exported)

KEYLESS_BENCH_BIG_GIB sets the size of the big input (default 2; 0 skips that part).

KEYLESS_BIN picks the server binary (default target/release/keyless);
KEYLESS_BENCH_NO_BUILD=1 skips the `cargo build --release` at the start.
"""

import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "clients"))
os.environ.setdefault("KEYLESS_BIN", str(ROOT / "target" / "release" / "keyless"))
from conftest import Server  # noqa: E402  (also installs the loopback guard)

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20
BACKEND = sys.argv[2] if len(sys.argv) > 2 else "local"
BIG_GIB = float(os.environ.get("KEYLESS_BENCH_BIG_GIB", "2"))
BIG_LIMIT_S = 600    # the big job, submit to a final status
LIMIT_S = 120        # per measured loop
JOB_LIMIT_S = 60     # per job, submit to a final status
POLL_S = 0.005
DOWNLOAD_RUNS = 3
BIG = 64 * 1024 * 1024
API = "api-version=2024-10-01"
STORAGE_VERSION = "2025-01-05"
TERMINAL = ("Completed", "Failed", "Canceled")
STARTED = ("Running", "Finalizing") + TERMINAL
LATENCY_TARGET_MS = 200
RATIO_TARGET = 0.9

JOB_YAML = """command: "true"
compute: azureml:cpu
environment: azureml:any@latest
identity:
  type: user_identity
"""
COMPUTE_YAML = """name: cpu
type: amlcompute
max_instances: 4
identity:
  type: system_assigned
"""
SLURM_KEYS = """keyless:
  backend: slurm
  slurm:
    partition: debug
"""


class NoJobsApi(Exception):
    pass


def p90(values):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


class Jobs:
    """Submits jobs to bench-ws over REST and follows them through the log endpoint."""

    def __init__(self, srv, arm):
        sub = srv.admin["subscription"]
        self.base = (f"{srv.info['management']}/subscriptions/{sub}/resourceGroups/default/providers/"
                     "Microsoft.MachineLearningServices/workspaces/bench-ws/jobs")
        self.ca = srv.ca  # per request: a session's verify loses to REQUESTS_CA_BUNDLE
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {arm}"

    def submit(self, name, properties):
        r = self.session.put(f"{self.base}/{name}?{API}", json={"properties": properties}, verify=self.ca)
        if r.status_code == 404:
            raise NoJobsApi(f"PUT {self.base}/{name} → 404: {r.text[:300]}")
        assert r.status_code in (200, 201), (name, r.status_code, r.text[:500])
        return r.json()

    def follow(self, name, limit=JOB_LIMIT_S, sample=None):
        """Polls the log endpoint until the job ends; returns {status: first time seen} and the last reply.
        `sample` is called between polls."""
        seen, deadline = {}, time.monotonic() + limit
        url = f"{self.base}/{name}/log?{API}&offset=0"
        while True:
            r = self.session.get(url, verify=self.ca)
            now = time.monotonic()
            assert r.status_code == 200, (name, r.status_code, r.text[:300])
            body = r.json()
            seen.setdefault(body["status"], now)
            if body.get("finished") or body["status"] in TERMINAL:
                return seen, body
            if now > deadline:
                raise AssertionError(f"job {name} still {body['status']} after {limit} s")
            if sample:
                sample()
            time.sleep(POLL_S if not sample else 0.2)

    def show(self, name):
        r = self.session.get(f"{self.base}/{name}?{API}", verify=self.ca)
        assert r.status_code == 200, (name, r.status_code, r.text[:300])
        return r.json()

    def run(self, name, properties, limit=JOB_LIMIT_S, sample=None):
        t0 = time.monotonic()
        self.submit(name, properties)
        seen, last = self.follow(name, limit, sample)
        if last["status"] != "Completed":
            job = self.show(name)
            raise AssertionError(f"job {name} ended {last['status']}: "
                                 f"{job['properties'].get('error')}\n{last.get('text', '')[-2000:]}")
        return t0, seen, last


def first(seen, statuses):
    times = [seen[s] for s in statuses if s in seen]
    return min(times) if times else None


def main():
    if os.environ.get("KEYLESS_BENCH_NO_BUILD") != "1":
        subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "keyless"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(Path(tmp)).start()
        try:
            return bench(srv, Path(tmp))
        except NoJobsApi as e:
            print(f"the server at {os.environ['KEYLESS_BIN']} has no jobs API (is it older than the source?): {e}")
            return 1
        finally:
            srv.stop()


def bench(srv, tmp):
    srv.login_admin()
    sub = srv.admin["subscription"]
    srv.cli("storage", "account", "create", "-n", "benchjobs", "-g", "default")
    account_id = f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/benchjobs"
    srv.cli("role", "assignment", "create", "--assignee", srv.admin["username"],
            "--role", "Storage Blob Data Contributor", "--scope", account_id)
    ws = tmp / "ws.yml"
    ws.write_text("name: bench-ws\n")
    srv.cli("ml", "workspace", "create", "-f", str(ws), "-g", "default")
    compute = tmp / "compute.yml"
    compute.write_text(COMPUTE_YAML + (SLURM_KEYS if BACKEND == "slurm" else ""))
    print(f"== backend: {BACKEND}")
    srv.cli("ml", "compute", "create", "-f", str(compute), "-w", "bench-ws", "-g", "default")
    ds = tmp / "ds.yml"
    ds.write_text("name: mydata\ntype: azure_blob\naccount_name: benchjobs\ncontainer_name: data\n")
    srv.cli("ml", "datastore", "create", "-f", str(ds), "-w", "bench-ws", "-g", "default")
    arm = srv.cli("account", "get-access-token")["accessToken"]
    storage = srv.cli("account", "get-access-token", "--resource", "https://storage.azure.com")["accessToken"]

    common = {"Authorization": f"Bearer {storage}", "x-ms-version": STORAGE_VERSION}
    blob_url = f"{srv.info['storage']}/benchjobs/data/big.bin"
    requests.put(f"{srv.info['storage']}/benchjobs/data?restype=container", headers=common,
                 verify=srv.ca).raise_for_status()
    payload = os.urandom(BIG)
    requests.put(blob_url, data=payload, headers={**common, "x-ms-blob-type": "BlockBlob"},
                 verify=srv.ca).raise_for_status()
    del payload

    jobs = Jobs(srv, arm)
    bare = {"jobType": "Command", "command": "true", "computeId": "azureml:cpu",
            "identity": {"identityType": "UserIdentity"}}
    with_input = {**bare, "inputs": {"d": {"jobInputType": "uri_file",
                                            "uri": "azureml://datastores/mydata/paths/big.bin",
                                            "mode": "Download"}}}

    # Warm-up, not measured: one job over REST (a 404 here means the binary has no jobs
    # API), one from the job file through the CLI.
    jobs.run(f"warm-{uuid.uuid4().hex[:8]}", bare)
    job_file = tmp / "job.yml"
    job_file.write_text(JOB_YAML)
    cli_name = f"warm-cli-{uuid.uuid4().hex[:8]}"
    srv.cli("ml", "job", "create", "-f", str(job_file), "-n", cli_name, "-w", "bench-ws", "-g", "default")
    jobs.follow(cli_name)

    print(f"== submit to running: {N} jobs (`true`, no code, no inputs), sequential, ~{POLL_S * 1000:.0f} ms polls")
    to_running, to_completed = [], []
    start = time.monotonic()
    while len(to_running) < N and time.monotonic() - start < LIMIT_S:
        t0, seen, _ = jobs.run(f"lat-{len(to_running)}-{uuid.uuid4().hex[:8]}", bare)
        to_running.append((first(seen, STARTED) - t0) * 1000)
        to_completed.append((seen["Completed"] - t0) * 1000)
    lat_median, lat_p90 = statistics.median(to_running), p90(to_running)
    done_median = statistics.median(to_completed)
    print(f"  submit → running      median {lat_median:7.1f} ms   p90 {lat_p90:7.1f} ms   ({len(to_running)} jobs)")
    print(f"  submit → completed    median {done_median:7.1f} ms")

    print(f"== input download: {BIG // (1024 * 1024)} MiB blob, best of {DOWNLOAD_RUNS}")
    plain = []
    start = time.monotonic()
    while len(plain) < DOWNLOAD_RUNS and time.monotonic() - start < LIMIT_S:
        # curl to a file, as the agent writes one: a client as fast as the agent's.
        with tempfile.NamedTemporaryFile(dir=os.environ.get("TMPDIR", "/var/tmp")) as f:
            t0 = time.monotonic()
            curl(["-o", f.name, blob_url], common, srv.ca)
            t1 = time.monotonic()
            assert os.path.getsize(f.name) == BIG, os.path.getsize(f.name)
        plain.append(BIG / 1e6 / (t1 - t0))
    plain_best = max(plain)
    print(f"  plain GET (bearer, curl)  {plain_best:8.1f} MB/s   runs: {', '.join(f'{x:.1f}' for x in plain)}")

    job_rates, estimated = [], False
    start = time.monotonic()
    while len(job_rates) < DOWNLOAD_RUNS and time.monotonic() - start < LIMIT_S:
        name = f"dl-{len(job_rates)}-{uuid.uuid4().hex[:8]}"
        t_submit, seen, last = jobs.run(name, with_input)
        assert "input `d`: downloading" in last["text"], last["text"][-2000:]
        t0 = seen.get("Preparing")
        if t0 is None:  # never caught in Preparing: count from the PUT (a lower bound)
            t0, estimated = t_submit, True
        job_rates.append(BIG / 1e6 / (first(seen, STARTED) - t0))
    job = jobs.show(name)
    history = " → ".join(h["status"] for h in job.get("status_history", []))
    job_best = max(job_rates)
    ratio = job_best / plain_best
    print(f"  job input (Preparing)     {job_best:8.1f} MB/s   runs: {', '.join(f'{x:.1f}' for x in job_rates)}"
          + ("   (some runs timed from the PUT)" if estimated else ""))
    print(f"  job / plain: {ratio:.2f}   (last job: {history})")

    big = None
    if BIG_GIB > 0:
        big = big_job(srv, jobs, common, with_input)

    print("== summary")
    ok_latency = lat_median <= LATENCY_TARGET_MS or BACKEND != "local"
    ok_ratio = ratio >= RATIO_TARGET
    print(f"  submit → running   median {lat_median:.1f} ms, p90 {lat_p90:.1f} ms "
          + (f"(target ≤ {LATENCY_TARGET_MS} ms: {'met' if ok_latency else 'MISSED'})" if BACKEND == "local"
             else "(Slurm's own scheduling pass dominates; no target)"))
    print(f"  submit → completed median {done_median:.1f} ms")
    print(f"  input download     {job_best:.1f} MB/s vs plain {plain_best:.1f} MB/s = {ratio:.2f}× "
          f"(target ≥ {RATIO_TARGET}×: {'met' if ok_ratio else 'MISSED'})")
    if big:
        print(f"  {BIG_GIB:g} GiB in and out  server RSS {big['before'] / 1024:.0f} → peak {big['peak'] / 1024:.0f} MiB, "
              f"agent peak {big['agent'] / 1024:.0f} MiB, {big['seconds']:.1f} s")
    return 0


def curl(args, headers, ca):
    """curl on loopback, bounded in time; returns its stdout."""
    flags = [x for k, v in headers.items() for x in ("-H", f"{k}: {v}")]
    out = subprocess.run(["curl", "-sSf", "--max-time", "600", "--cacert", ca, *flags, *args],
                         capture_output=True, text=True, check=True)
    return out.stdout


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0


def agent_pids():
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"job-agent" in f.read():
                    found.append(pid)
        except OSError:
            continue
    return found


def big_job(srv, jobs, common, with_input):
    """A job that copies a BIG_GIB GiB input to its output, with the server's and the agent's RSS sampled."""
    size = int(BIG_GIB * 1024 ** 3)
    print(f"== {BIG_GIB:g} GiB input and output: server and agent resident memory, sampled every 0.2 s")
    url = f"{srv.info['storage']}/benchjobs/data/huge.bin"

    with tempfile.NamedTemporaryFile(dir=os.environ.get("TMPDIR", "/var/tmp")) as f:
        block = os.urandom(8 * 1024 * 1024)
        for _ in range(size // len(block)):
            f.write(block)
        f.write(block[:size % len(block)])
        f.flush()
        curl(["-T", f.name, "-H", "x-ms-blob-type: BlockBlob", url], common, srv.ca)
    server_pid = srv.proc.pid
    before = rss_kib(server_pid)
    peaks = {"server": before, "agent": 0}

    def sample():
        peaks["server"] = max(peaks["server"], rss_kib(server_pid))
        for pid in agent_pids():
            peaks["agent"] = max(peaks["agent"], rss_kib(pid))
    props = {**with_input, "command": "cp ${{inputs.d}} ${{outputs.o}}/copy.bin",
             "inputs": {"d": {**with_input["inputs"]["d"], "uri": "azureml://datastores/mydata/paths/huge.bin"}},
             "outputs": {"o": {"jobOutputType": "uri_folder", "mode": "Upload",
                               "uri": "azureml://datastores/mydata/paths/huge-out/"}}}
    t0 = time.monotonic()
    jobs.run(f"big-{uuid.uuid4().hex[:8]}", props, limit=BIG_LIMIT_S, sample=sample)
    seconds = time.monotonic() - t0
    head = requests.head(f"{srv.info['storage']}/benchjobs/data/huge-out/copy.bin", headers=common, verify=srv.ca)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == size, head.status_code
    print(f"  server RSS   before {before / 1024:7.1f} MiB   peak {peaks['server'] / 1024:7.1f} MiB")
    print(f"  agent RSS    peak   {peaks['agent'] / 1024:7.1f} MiB   (job: {seconds:.1f} s, "
          f"{2 * size / 1e6 / seconds:.0f} MB/s in and out)")
    return {"before": before, "peak": peaks["server"], "agent": peaks["agent"], "seconds": seconds}


if __name__ == "__main__":
    sys.exit(main())
