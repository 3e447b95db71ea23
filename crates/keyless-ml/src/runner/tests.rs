//! The runner's state machine against a fake host and a fake backend.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::*;

/// Records what the runner asked of it; reports what a test set.
#[derive(Debug)]
struct FakeHost {
    backend: Arc<dyn ComputeBackend>,
    slots: Arc<Semaphore>,
    admit: Option<Stop>,
    reports: Mutex<Reports>,
    log: Mutex<Vec<String>>,
    finished: Mutex<Option<Outcome>>,
}

impl FakeHost {
    fn new(backend: FakeBackend) -> Self {
        Self {
            backend: Arc::new(backend),
            slots: Arc::new(Semaphore::new(1)),
            admit: None,
            reports: Mutex::new(Reports::default()),
            log: Mutex::new(Vec::new()),
            finished: Mutex::new(None),
        }
    }

    fn reporting(self, reports: Reports) -> Self {
        *self.reports.lock().unwrap() = reports;
        self
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

#[async_trait]
impl JobHost for FakeHost {
    async fn admit(&self, job: &str) -> Result<Admitted, Stop> {
        self.log.lock().unwrap().push(format!("admit {job}"));
        match &self.admit {
            Some(stop) => Err(stop.clone()),
            None => Ok(Admitted {
                backend: Arc::clone(&self.backend),
                slots: Arc::clone(&self.slots),
                timeout: Some(5),
            }),
        }
    }

    async fn launch(
        &self,
        job: &str,
        _backend: &dyn ComputeBackend,
        resume: Option<&str>,
    ) -> Result<Task, Stop> {
        self.log
            .lock()
            .unwrap()
            .push(format!("launch {job} resume={resume:?}"));
        Ok(Task {
            job: job.into(),
            command: "agent".into(),
            root: PathBuf::from("/nonexistent"),
            cwd: PathBuf::new(),
            env: Vec::new(),
            log: PathBuf::from("/nonexistent/log"),
            timeout: None,
            events: None,
            fuse: false,
            image: false,
        })
    }

    async fn event(&self, _job: &str, event: Event) {
        self.log.lock().unwrap().push(format!("event {event:?}"));
    }

    async fn heartbeat(&self, _job: &str) {
        self.log.lock().unwrap().push("heartbeat".into());
    }

    fn reports(&self, _job: &str) -> Reports {
        self.reports.lock().unwrap().clone()
    }

    async fn finish(&self, _job: &str, outcome: &Outcome) {
        *self.finished.lock().unwrap() = Some(outcome.clone());
    }
}

/// A backend whose task "runs" for `runs`, tells `events`, and ends `exit`
/// (or canceled, when canceled first).
#[derive(Debug, Clone)]
struct FakeBackend {
    exit: Result<Exit, String>,
    runs: Duration,
    events: Vec<Event>,
    survives: bool,
    calls: Arc<Mutex<Vec<String>>>,
}

impl FakeBackend {
    fn ending(exit: Exit) -> Self {
        Self {
            exit: Ok(exit),
            runs: Duration::from_millis(10),
            events: Vec::new(),
            survives: false,
            calls: Arc::new(Mutex::new(Vec::new())),
        }
    }

    async fn go(
        &self,
        task: &Task,
        cancel: CancellationToken,
    ) -> Result<Exit, keyless_core::Error> {
        for e in &self.events {
            task.tell(e.clone());
        }
        tokio::select! {
            () = tokio::time::sleep(self.runs) => {}
            () = cancel.cancelled() => return Ok(Exit::Canceled),
        }
        self.exit.clone().map_err(keyless_core::Error::internal)
    }
}

#[async_trait]
impl ComputeBackend for FakeBackend {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn job_root(&self, root: &Path) -> PathBuf {
        root.to_path_buf()
    }

    fn survives_restart(&self) -> bool {
        self.survives
    }

    async fn run(
        &self,
        task: Task,
        cancel: CancellationToken,
    ) -> Result<Exit, keyless_core::Error> {
        self.calls.lock().unwrap().push("run".into());
        self.go(&task, cancel).await
    }

    async fn reattach(
        &self,
        handle: &str,
        task: Task,
        cancel: CancellationToken,
    ) -> Result<Exit, keyless_core::Error> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("reattach {handle}"));
        self.go(&task, cancel).await
    }
}

fn completed() -> Reports {
    Reports {
        exit: Some(Exit::Code(0)),
        done: true,
        stop: None,
    }
}

async fn run_plain(host: &FakeHost) -> Outcome {
    run(
        host,
        "j",
        None,
        &CancellationToken::new(),
        &CancellationToken::new(),
    )
    .await
}

#[tokio::test]
async fn a_job_whose_agent_reports_success_completes_and_the_backends_events_reach_the_host() {
    let mut backend = FakeBackend::ending(Exit::Code(0));
    backend.events = vec![Event::Submitted("42".into()), Event::Started];
    let host = FakeHost::new(backend).reporting(completed());
    assert_eq!(run_plain(&host).await, Outcome::Completed);
    assert_eq!(*host.finished.lock().unwrap(), Some(Outcome::Completed));
    let log = host.log();
    assert_eq!(
        log[..2],
        ["admit j".to_owned(), "launch j resume=None".to_owned()]
    );
    assert!(
        log.contains(&"event Submitted(\"42\")".to_owned())
            && log.contains(&"event Started".to_owned())
    );
}

#[tokio::test]
async fn the_end_is_decided_by_the_agents_reports_first() {
    let cases = [
        (
            Reports {
                exit: Some(Exit::Code(3)),
                done: false,
                stop: None,
            },
            "UserError",
        ),
        (
            Reports {
                exit: Some(Exit::TimedOut),
                done: false,
                stop: None,
            },
            "JobTimedOut",
        ),
        (
            Reports {
                exit: None,
                done: false,
                stop: Some(Stop::failed("InputAccessDenied", "refused as bob")),
            },
            "InputAccessDenied",
        ),
        // The agent died before it said how the command ended.
        (Reports::default(), "AgentFailed"),
        // The command succeeded but the outputs were never reported uploaded.
        (
            Reports {
                exit: Some(Exit::Code(0)),
                done: false,
                stop: None,
            },
            "AgentFailed",
        ),
    ];
    for (reports, code) in cases {
        let host = FakeHost::new(FakeBackend::ending(Exit::Code(0))).reporting(reports.clone());
        match run_plain(&host).await {
            Outcome::Stopped(stop) => {
                assert_eq!(
                    (stop.status, stop.code),
                    (Status::Failed, code),
                    "{reports:?}"
                );
            }
            other => panic!("{reports:?} ended {other:?}"),
        }
    }
    let timed_out = decide(
        Exit::Code(0),
        &Reports {
            exit: Some(Exit::TimedOut),
            ..Reports::default()
        },
        Some(5),
    );
    assert!(matches!(timed_out, Outcome::Stopped(s) if s.message.contains("(5s)")));
}

#[tokio::test]
async fn a_job_that_cannot_be_admitted_or_started_fails_with_the_reason() {
    let mut host = FakeHost::new(FakeBackend::ending(Exit::Code(0)));
    host.admit = Some(Stop::failed("ComputeNotFound", "compute gone"));
    assert!(matches!(run_plain(&host).await, Outcome::Stopped(s) if s.code == "ComputeNotFound"));
    assert_eq!(host.log(), ["admit j"], "nothing was launched");
    let mut broken = FakeBackend::ending(Exit::Code(0));
    broken.exit = Err("sbatch: invalid partition".into());
    let host = FakeHost::new(broken).reporting(completed());
    assert!(
        matches!(run_plain(&host).await, Outcome::Stopped(s) if s.code == "JobStartFailed" && s.message.contains("invalid partition"))
    );
}

#[tokio::test]
async fn cancel_while_queued_never_launches_and_cancel_while_running_reaches_the_backend() {
    let backend = FakeBackend::ending(Exit::Code(0));
    let calls = Arc::clone(&backend.calls);
    let host = FakeHost::new(backend).reporting(completed());
    // Every slot is taken: the job waits in the queue, then is canceled there.
    let held = Arc::clone(&host.slots).acquire_owned().await.unwrap();
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        trigger.cancel();
    });
    let outcome = run(&host, "j", None, &cancel, &CancellationToken::new()).await;
    assert_eq!(outcome, Outcome::Stopped(Stop::canceled()));
    assert!(calls.lock().unwrap().is_empty(), "the backend never ran");
    assert_eq!(host.log(), ["admit j"]);
    drop(held);
    // Running: the cancel reaches the backend, whatever the agent said before.
    let mut long = FakeBackend::ending(Exit::Code(0));
    long.runs = Duration::from_secs(60);
    let host = FakeHost::new(long).reporting(completed());
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        trigger.cancel();
    });
    let started = std::time::Instant::now();
    let outcome = run(&host, "j", None, &cancel, &CancellationToken::new()).await;
    assert_eq!(outcome, Outcome::Stopped(Stop::canceled()));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_resumed_job_is_reattached_by_its_handle_not_started_again() {
    let mut backend = FakeBackend::ending(Exit::Code(0));
    backend.survives = true;
    let calls = Arc::clone(&backend.calls);
    let host = FakeHost::new(backend).reporting(completed());
    let outcome = run(
        &host,
        "j",
        Some("77"),
        &CancellationToken::new(),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(*calls.lock().unwrap(), ["reattach 77"]);
    assert!(
        host.log()
            .contains(&"launch j resume=Some(\"77\")".to_owned())
    );
}

#[tokio::test]
async fn a_stopping_server_lets_a_surviving_backend_run_on_and_stops_any_other() {
    for (survives, expected) in [(true, None), (false, Some("ServerStopped"))] {
        let mut backend = FakeBackend::ending(Exit::Code(0));
        backend.runs = Duration::from_secs(60);
        backend.survives = survives;
        let host = FakeHost::new(backend).reporting(completed());
        let stopping = CancellationToken::new();
        let trigger = stopping.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            trigger.cancel();
        });
        let outcome = run(&host, "j", None, &CancellationToken::new(), &stopping).await;
        match (expected, outcome) {
            (None, Outcome::Detached) => {}
            (Some(code), Outcome::Stopped(s)) if s.code == code => {}
            (e, o) => panic!("survives={survives}: expected {e:?}, got {o:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_long_job_renews_its_claim() {
    let mut backend = FakeBackend::ending(Exit::Code(0));
    backend.runs = HEARTBEAT * 3 + Duration::from_secs(1);
    let host = FakeHost::new(backend).reporting(completed());
    assert_eq!(run_plain(&host).await, Outcome::Completed);
    assert_eq!(host.log().iter().filter(|l| *l == "heartbeat").count(), 3);
}

#[test]
fn statuses_read_back_as_written() {
    for s in [
        Status::Queued,
        Status::Preparing,
        Status::Running,
        Status::Finalizing,
        Status::Completed,
        Status::Failed,
        Status::Canceled,
    ] {
        assert_eq!(Status::parse(s.as_str()), Some(s));
    }
    assert_eq!(Status::parse("Exploded"), None);
    assert!(Status::Canceled.is_terminal() && !Status::Queued.is_terminal());
}

#[tokio::test]
async fn a_job_canceled_before_it_is_followed_again_is_canceled_through_its_backend() {
    let mut backend = FakeBackend::ending(Exit::Code(0));
    backend.survives = true;
    backend.runs = Duration::from_secs(60);
    let calls = Arc::clone(&backend.calls);
    let host = FakeHost::new(backend).reporting(completed());
    // Canceled while no server ran it: the backend's task is reached and canceled.
    let cancel = CancellationToken::new();
    cancel.cancel();
    let started = std::time::Instant::now();
    let outcome = run(&host, "j", Some("88"), &cancel, &CancellationToken::new()).await;
    assert_eq!(outcome, Outcome::Stopped(Stop::canceled()));
    assert_eq!(*calls.lock().unwrap(), ["reattach 88"]);
    assert!(
        host.log()
            .contains(&"launch j resume=Some(\"88\")".to_owned())
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}
