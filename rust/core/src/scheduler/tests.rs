//! Tests of the scheduler's logic with a fake runner: jobs are scripts of
//! steps (ask for targets, write `$3`, fail) run by the test in place of
//! processes, against a real state database in a temporary directory.
//! Spawning, signals and descriptors are tested with real processes in
//! `spawn.rs` and through the installed commands in `tests/`.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::*;
use crate::protocol::{Command, Request};
use crate::report::Recorder;
use crate::resolve::{DoMatch, Resolution, Resolver};

/// One step of a fake job.
#[derive(Clone, Debug)]
enum Step {
    /// `redo-ifchange` of these targets; the job waits for the reply.
    IfChange(&'static [&'static str]),
    /// Write this content to `$3`.
    Write(&'static str),
    /// Write the content of this file (in the test's directory) to `$3`.
    Copy(&'static str),
    /// `redo-always`.
    Always,
    /// Exit with this status.
    Exit(i32),
}

/// Resolves `NAME` to `NAME.do` when the test gave it a script.
struct FakeResolver {
    dir: PathBuf,
    scripts: HashMap<String, Vec<Step>>,
}

impl Resolver for FakeResolver {
    fn resolve(&self, target: &Path) -> Result<Resolution, String> {
        let name = target.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if !self.scripts.contains_key(&name) {
            return Ok(Resolution { found: None, missing: vec![self.dir.join(format!("{name}.do"))] });
        }
        let dofile = self.dir.join(format!("{name}.do"));
        Ok(Resolution {
            found: Some(DoMatch { dofile, arg1: name.clone().into(), arg2: name.into() }),
            missing: Vec::new(),
        })
    }
}

/// A fake job in progress.
struct FakeJob {
    id: JobId,
    target: String,
    dollar3: PathBuf,
    steps: VecDeque<Step>,
    /// Client id of the request the job waits for.
    waiting: Option<ClientId>,
}

/// What one run did.
#[derive(Debug, Default)]
struct Trace {
    /// Targets in the order their jobs started.
    started: Vec<String>,
    /// "start TARGET" and "resume TARGET" (a script's wait ended), in order.
    order: Vec<String>,
    /// Most jobs running at once.
    max_parallel: usize,
    /// Whether the top-level request succeeded.
    success: bool,
}

struct Harness {
    dir: tempfile::TempDir,
    scripts: HashMap<String, Vec<Step>>,
    shuffle: bool,
}

impl Harness {
    fn new() -> Harness {
        Harness { dir: tempfile::tempdir().expect("tempdir"), scripts: HashMap::new(), shuffle: false }
    }

    fn script(&mut self, name: &str, steps: &[Step]) -> &mut Harness {
        std::fs::write(self.dir.path().join(format!("{name}.do")), format!("# {name} {steps:?}\n")).expect("write .do");
        self.scripts.insert(name.to_string(), steps.to_vec());
        self
    }

    fn source(&self, name: &str, content: &str) {
        std::fs::write(self.dir.path().join(name), content).expect("write source");
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_else(|_| "<missing>".into())
    }

    fn config(&self, jobs: usize, keep_going: bool) -> Config {
        Config {
            top: self.dir.path().to_path_buf(),
            startdir: self.dir.path().to_path_buf(),
            command: "test".into(),
            jobs: Some(jobs),
            keep_going,
            shuffle: self.shuffle,
            ..Config::default()
        }
    }

    /// Runs one build of `targets` with the fake runner.
    fn build(&self, targets: &[&str], force: bool, jobs: usize, keep_going: bool) -> (Trace, Vec<Event>) {
        let config = self.config(jobs, keep_going);
        let resolver = FakeResolver { dir: self.dir.path().to_path_buf(), scripts: self.scripts.clone() };
        let recorder = Recorder::default();
        let store = Store::open_existing(self.dir.path()).expect("open store");
        let tokens = Tokens::counted(jobs);
        let mut scheduler = Scheduler::new(&config, &resolver, &recorder, PathBuf::from("/nonexistent"), store, tokens);
        let targets: Vec<PathBuf> = targets.iter().map(PathBuf::from).collect();
        scheduler.submit_top(&targets, force);
        let trace = self.drive(&mut scheduler, &resolver);
        drop(scheduler);
        (trace, recorder.events())
    }

    fn drive(&self, scheduler: &mut Scheduler<'_>, resolver: &FakeResolver) -> Trace {
        let mut trace = Trace::default();
        let mut jobs: Vec<FakeJob> = Vec::new();
        let mut next_client: ClientId = 1;
        for _round in 0..10_000 {
            scheduler.drain();
            while let Some(action) = scheduler.next_action() {
                match action {
                    Action::Spawn { job, spec } => {
                        let target = env_value(&spec.env, "REDO_TARGET");
                        let dollar3 = spec.cwd.join(spec.argv.last().expect("$3"));
                        trace.started.push(target.clone());
                        trace.order.push(format!("start {target}"));
                        let steps = resolver.scripts[&target].iter().cloned().collect();
                        jobs.push(FakeJob { id: job, target, dollar3, steps, waiting: None });
                        trace.max_parallel = trace.max_parallel.max(jobs.len());
                    }
                    Action::Reply { client, reply } => {
                        let job =
                            jobs.iter_mut().find(|job| job.waiting == Some(client)).expect("reply to a waiting job");
                        job.waiting = None;
                        trace.order.push(format!("resume {}", job.target));
                        if reply.status != 0 {
                            job.steps = VecDeque::from([Step::Exit(reply.status)]);
                        }
                    }
                }
                scheduler.drain();
            }
            if let Some(success) = scheduler.top_result() {
                if jobs.is_empty() {
                    trace.success = success;
                    return trace;
                }
            }
            // Run the first job that is not waiting, until it waits or ends.
            let Some(index) = jobs.iter().position(|job| job.waiting.is_none()) else {
                panic!(
                    "deadlock: every fake job waits for a reply: {:?}",
                    jobs.iter().map(|job| &job.target).collect::<Vec<_>>()
                );
            };
            let job = &mut jobs[index];
            match job.steps.pop_front() {
                Some(Step::IfChange(names)) => {
                    let client = next_client;
                    next_client += 1;
                    job.waiting = Some(client);
                    let args = names.iter().map(OsString::from).collect();
                    let request =
                        Request { command: Command::Ifchange, job: job.id, cwd: self.dir.path().into(), args };
                    scheduler.request(client, request);
                }
                Some(Step::Always) => {
                    let client = next_client;
                    next_client += 1;
                    job.waiting = Some(client);
                    let request = Request {
                        command: Command::Always,
                        job: job.id,
                        cwd: self.dir.path().into(),
                        args: Vec::new(),
                    };
                    scheduler.request(client, request);
                }
                Some(Step::Write(content)) => std::fs::write(&job.dollar3, content).expect("write $3"),
                Some(Step::Copy(name)) => {
                    std::fs::copy(self.dir.path().join(name), &job.dollar3).expect("copy to $3");
                }
                step @ (Some(Step::Exit(_)) | None) => {
                    let status = ExitStatus::Code(if let Some(Step::Exit(code)) = step { code } else { 0 });
                    let job = jobs.remove(index);
                    // As the engine does: the token may go to the next job
                    // before the result is recorded.
                    scheduler.release_job(job.id, status);
                    scheduler.drain();
                    scheduler.job_exited(job.id, status, &[]);
                }
            }
        }
        panic!("the build did not finish");
    }
}

fn env_value(env: &[(OsString, OsString)], name: &str) -> String {
    env.iter().find(|(key, _)| key == name).map(|(_, value)| value.to_string_lossy().into_owned()).expect(name)
}

fn errors(events: &[Event]) -> Vec<String> {
    events.iter().filter(|event| event.kind == EventKind::Error).map(|event| event.message.clone()).collect()
}

#[test]
fn nested_requests_do_not_deadlock_with_one_token() {
    let mut harness = Harness::new();
    harness
        .script("all", &[Step::IfChange(&["a", "b"]), Step::Write("all")])
        .script("a", &[Step::IfChange(&["c"]), Step::Write("a")])
        .script("b", &[Step::Write("b")])
        .script("c", &[Step::Write("c")]);
    let (trace, events) = harness.build(&["all"], true, 1, false);
    assert!(trace.success, "{events:?}");
    assert_eq!(trace.started, ["all", "a", "c", "b"]);
    assert_eq!(trace.max_parallel, 3, "waiting jobs stay alive while their dependencies build");
    assert_eq!(harness.read("all"), "all");
}

#[test]
fn one_token_resumes_waiting_script_first() {
    let mut harness = Harness::new();
    harness
        .script("all", &[Step::IfChange(&["p", "q"]), Step::Write("all")])
        .script("p", &[Step::IfChange(&["dep"]), Step::Write("p")])
        .script("q", &[Step::Write("q")])
        .script("dep", &[Step::Write("dep")]);
    let (trace, events) = harness.build(&["all"], true, 1, false);
    assert!(trace.success, "{events:?}");
    // Depth first: p goes on as soon as dep is built, and q starts after p.
    assert_eq!(trace.order, ["start all", "start p", "start dep", "resume p", "start q", "resume all"]);
}

#[test]
fn one_token_runs_one_script_at_a_time() {
    let mut harness = Harness::new();
    harness.script("all", &[Step::IfChange(&["a", "b", "c"])]);
    for name in ["a", "b", "c"] {
        harness.script(name, &[Step::Write(name)]);
    }
    let (trace, _) = harness.build(&["all"], true, 1, false);
    assert_eq!(trace.started, ["all", "a", "b", "c"]);
    // The fake runner runs one job per round, so jobs that started and have
    // not exited overlap only when the scheduler hands out several tokens.
    assert_eq!(trace.max_parallel, 2);
}

#[test]
fn several_tokens_start_requested_targets_together() {
    let mut harness = Harness::new();
    harness.script("all", &[Step::IfChange(&["a", "b", "c", "d"])]);
    for name in ["a", "b", "c", "d"] {
        harness.script(name, &[Step::Write(name)]);
    }
    let (trace, _) = harness.build(&["all"], true, 3, false);
    assert!(trace.success);
    // all waits without a token, so three of a..d run at once.
    assert_eq!(trace.max_parallel, 4);
}

#[test]
fn second_run_builds_nothing() {
    let mut harness = Harness::new();
    harness.script("all", &[Step::IfChange(&["a", "src"]), Step::Write("all")]).script("a", &[Step::Write("a")]);
    harness.source("src", "v1");
    let (first, _) = harness.build(&["all"], false, 1, false);
    assert_eq!(first.started, ["all", "a"]);
    let (second, _) = harness.build(&["all"], false, 1, false);
    assert!(second.success);
    assert!(second.started.is_empty(), "rebuilt {:?}", second.started);
}

#[test]
fn changed_source_rebuilds_only_its_dependents() {
    let mut harness = Harness::new();
    harness
        .script("all", &[Step::IfChange(&["a", "b"]), Step::Write("all")])
        .script("a", &[Step::IfChange(&["a.src"]), Step::Write("a")])
        .script("b", &[Step::IfChange(&["b.src"]), Step::Write("b")]);
    harness.source("a.src", "1");
    harness.source("b.src", "1");
    harness.build(&["all"], false, 1, false);
    harness.source("a.src", "2");
    let (trace, _) = harness.build(&["all"], false, 1, false);
    // a's output is byte-identical, so all is not rebuilt.
    assert_eq!(trace.started, ["a"]);
}

#[test]
fn changed_output_propagates_up() {
    let mut harness = Harness::new();
    harness.script("all", &[Step::IfChange(&["a"]), Step::Write("all")]).script("a", &[Step::IfChange(&["a.src"])]);
    harness.source("a.src", "1");
    // a writes nothing: a target without a file changes with every build.
    harness.build(&["all"], false, 1, false);
    harness.source("a.src", "2");
    let (trace, _) = harness.build(&["all"], false, 1, false);
    assert_eq!(trace.started, ["a", "all"]);
}

#[test]
fn two_target_cycle_is_named_and_fails() {
    let mut harness = Harness::new();
    harness
        .script("a", &[Step::IfChange(&["b"]), Step::Write("a")])
        .script("b", &[Step::IfChange(&["a"]), Step::Write("b")]);
    let (trace, events) = harness.build(&["a"], true, 1, false);
    assert!(!trace.success);
    let errors = errors(&events);
    assert!(errors.iter().any(|message| message == "dependency cycle: a -> b -> a"), "{errors:?}");
    // a did not fail on its own, so b's message names the request that closed the cycle.
    let b_failed =
        "cannot build 'b': b.do failed with exit status 1 after it asked for 'a', which would close the cycle";
    let a_failed = "cannot build 'a': a.do failed with exit status 1 after its dependency 'b' failed";
    assert_eq!(errors[1..], [b_failed, a_failed]);
    assert_eq!(harness.read("a"), "<missing>");
}

#[test]
fn three_target_cycle_starts_at_requested_target() {
    let mut harness = Harness::new();
    harness
        .script("a", &[Step::IfChange(&["b"]), Step::Write("a")])
        .script("b", &[Step::IfChange(&["c"]), Step::Write("b")])
        .script("c", &[Step::IfChange(&["a"]), Step::Write("c")]);
    let (trace, events) = harness.build(&["a"], true, 1, false);
    assert!(!trace.success);
    let errors = errors(&events);
    assert!(errors.iter().any(|message| message == "dependency cycle: a -> b -> c -> a"), "{errors:?}");
}

#[test]
fn self_dependency_fails_without_hanging() {
    let mut harness = Harness::new();
    harness.script("all", &[Step::IfChange(&["x", "all"])]).script("x", &[Step::Write("x")]);
    let (trace, events) = harness.build(&["all"], true, 1, false);
    assert!(!trace.success);
    let errors = errors(&events);
    assert_eq!(
        errors,
        [
            "cannot build 'all': it depends on itself",
            "cannot build 'all': all.do failed with exit status 1 after it asked for itself"
        ]
    );
}

#[test]
fn failure_stops_unstarted_targets() {
    let mut harness = Harness::new();
    harness
        .script("all", &[Step::IfChange(&["bad", "good"])])
        .script("bad", &[Step::Exit(1)])
        .script("good", &[Step::Write("good")]);
    let (trace, events) = harness.build(&["all"], true, 1, false);
    assert!(!trace.success);
    assert_eq!(trace.started, ["all", "bad"]);
    let errors = errors(&events);
    assert_eq!(errors[0], "cannot build 'bad': bad.do failed with exit status 1");
    assert_eq!(errors[1], "cannot build 'all': all.do failed with exit status 1 after its dependency 'bad' failed");
}

#[test]
fn failure_names_the_dependency_that_failed() {
    let mut harness = Harness::new();
    harness
        .script("all", &[Step::IfChange(&["one", "bad", "two"])])
        .script("one", &[Step::IfChange(&["one.s"]), Step::Write("one")])
        .script("bad", &[Step::IfChange(&["bad.s"]), Step::Write("bad")])
        .script("two", &[Step::IfChange(&["two.s"]), Step::Write("two")])
        .script("one.s", &[Step::Write("s")])
        .script("bad.s", &[Step::Exit(1)])
        .script("two.s", &[Step::Write("s")]);
    let (trace, events) = harness.build(&["all"], true, 2, false);
    assert!(!trace.success);
    let errors = errors(&events);
    // two and two.s never built: the run stopped before them, which is not
    // an error of theirs.
    assert_eq!(
        errors,
        [
            "cannot build 'bad.s': bad.s.do failed with exit status 1",
            "cannot build 'bad': bad.do failed with exit status 1 after its dependency 'bad.s' failed",
            "cannot build 'all': all.do failed with exit status 1 after its dependency 'bad' failed",
        ]
    );
}

#[test]
fn keep_going_builds_independent_targets() {
    let mut harness = Harness::new();
    harness
        .script("all", &[Step::IfChange(&["bad", "good"])])
        .script("bad", &[Step::Exit(1)])
        .script("good", &[Step::Write("good")]);
    let (trace, _) = harness.build(&["all"], true, 1, true);
    assert!(!trace.success);
    assert_eq!(trace.started, ["all", "bad", "good"]);
    assert_eq!(harness.read("good"), "good");
}

#[test]
fn failed_target_is_rebuilt_next_run() {
    let mut harness = Harness::new();
    harness.script("t", &[Step::Exit(2)]);
    harness.build(&["t"], false, 1, false);
    harness.script("t", &[Step::Write("fixed")]);
    let (trace, _) = harness.build(&["t"], false, 1, false);
    assert_eq!(trace.started, ["t"]);
    assert_eq!(harness.read("t"), "fixed");
}

#[test]
fn always_target_builds_once_per_run() {
    let mut harness = Harness::new();
    harness
        .script("all", &[Step::IfChange(&["clock", "user"]), Step::Write("all")])
        .script("user", &[Step::IfChange(&["clock"]), Step::Write("user")])
        .script("clock", &[Step::Always, Step::Write("tick")]);
    let (first, _) = harness.build(&["all"], false, 1, false);
    assert_eq!(first.started, ["all", "clock", "user"]);
    let (second, _) = harness.build(&["all"], false, 1, false);
    // clock runs again, once; its output did not change, so nothing else does.
    assert_eq!(second.started, ["clock"]);
}

#[test]
fn missing_dependency_fails_the_requester() {
    let mut harness = Harness::new();
    harness.script("all", &[Step::IfChange(&["nosuch"]), Step::Write("all")]);
    let (trace, events) = harness.build(&["all"], true, 1, false);
    assert!(!trace.success);
    assert!(errors(&events).iter().any(|message| message.starts_with("cannot build 'nosuch': it does not exist")));
}

#[test]
fn deep_chain_needs_no_recursion() {
    let mut harness = Harness::new();
    let names: Vec<&'static str> = (0..2000).map(|index| &*Box::leak(format!("n{index}").into_boxed_str())).collect();
    for pair in names.windows(2) {
        let dep: &'static [&'static str] = Box::leak(vec![pair[1]].into_boxed_slice());
        harness.script(pair[0], &[Step::IfChange(dep), Step::Write("x")]);
    }
    harness.script(names[names.len() - 1], &[Step::Write("leaf")]);
    let (first, _) = harness.build(&[names[0]], false, 1, false);
    assert_eq!(first.started.len(), names.len());
    let (second, _) = harness.build(&[names[0]], false, 1, false);
    assert!(second.started.is_empty());
    assert!(harness.up_to_date(&[names[0]]), "the read-only check walks the chain too");
}

#[test]
fn shuffle_varies_order_and_builds_everything() {
    let names: Vec<&'static str> = (0..12).map(|index| &*Box::leak(format!("t{index:02}").into_boxed_str())).collect();
    let all: &'static [&'static str] = Box::leak(names.clone().into_boxed_slice());
    let mut orders = std::collections::HashSet::new();
    for _ in 0..4 {
        let mut harness = Harness::new();
        harness.shuffle = true;
        harness.script("all", &[Step::IfChange(all)]);
        for name in &names {
            harness.script(name, &[Step::Write("x")]);
        }
        let (trace, _) = harness.build(&["all"], true, 1, false);
        assert!(trace.success);
        let mut built = trace.started[1..].to_vec();
        orders.insert(built.clone());
        built.sort();
        assert_eq!(built, names);
    }
    // 12 targets have 479001600 orders: four equal draws would be a bug.
    assert!(orders.len() > 1, "{orders:?}");
}

impl Harness {
    /// Whether the read-only check of `query` calls `targets` up to date.
    fn up_to_date(&self, targets: &[&str]) -> bool {
        let targets: Vec<PathBuf> = targets.iter().map(PathBuf::from).collect();
        crate::query::up_to_date(self.dir.path(), self.dir.path(), &targets).expect("query")
    }
}

/// Checks that the read-only check agrees with a run: when it says up to
/// date, the run builds nothing.
fn assert_check_agrees(harness: &Harness, targets: &[&str]) -> bool {
    let up_to_date = harness.up_to_date(targets);
    let (trace, events) = harness.build(targets, false, 1, false);
    if up_to_date {
        assert!(trace.started.is_empty(), "called up to date, but the run built {:?}", trace.started);
        assert!(events.iter().all(|event| event.kind != EventKind::Warning), "{events:?}");
    }
    up_to_date
}

#[test]
fn read_only_check_matches_a_run() {
    let mut harness = Harness::new();
    harness.script("all", &[Step::IfChange(&["a", "src"]), Step::Write("all")]).script("a", &[Step::Write("a")]);
    harness.source("src", "v1");
    assert!(!harness.up_to_date(&["all"]), "nothing was built yet");
    harness.build(&["all"], false, 1, false);
    // Files written just now have stamps too recent to trust; the check
    // hashes them and finds the content it recorded.
    assert!(assert_check_agrees(&harness, &["all"]));
    assert!(assert_check_agrees(&harness, &["a", "src"]));
    harness.source("src", "v2");
    assert!(!assert_check_agrees(&harness, &["all"]), "a changed source");
    assert!(assert_check_agrees(&harness, &["all"]), "the run rebuilt it");
    std::fs::remove_file(harness.dir.path().join("a")).expect("remove");
    assert!(!assert_check_agrees(&harness, &["all"]), "a deleted target");
    std::fs::write(harness.dir.path().join("a"), "by hand").expect("write");
    assert!(!assert_check_agrees(&harness, &["all"]), "a target changed by hand");
    assert!(!harness.up_to_date(&["nothing-here"]), "a file with no record");
}

#[test]
fn read_only_check_sees_flags() {
    let mut harness = Harness::new();
    harness
        .script("all", &[Step::IfChange(&["clock", "bad"])])
        .script("clock", &[Step::Always, Step::Write("tick")])
        .script("bad", &[Step::Exit(1)]);
    harness.build(&["all"], false, 1, true);
    assert!(!harness.up_to_date(&["clock"]), "redo-always");
    assert!(!harness.up_to_date(&["bad"]), "a failed build");
    assert!(!harness.up_to_date(&["all"]), "a failed dependency");
}

#[test]
fn read_only_check_compares_generations_of_shared_dependencies() {
    let mut harness = Harness::new();
    harness
        .script("a", &[Step::IfChange(&["c"]), Step::Write("a")])
        .script("b", &[Step::IfChange(&["c"]), Step::Write("b")])
        .script("c", &[Step::IfChange(&["src"]), Step::Copy("src")]);
    harness.source("src", "v1");
    harness.build(&["a", "b"], false, 1, false);
    harness.source("src", "v2");
    // Rebuilding a rebuilds c; b was built against the old c.
    harness.build(&["a"], false, 1, false);
    assert!(harness.up_to_date(&["a"]));
    assert!(!assert_check_agrees(&harness, &["a", "b"]), "b depends on a c that changed");
}

#[test]
fn building_mark_is_committed_before_the_job_starts() {
    let mut harness = Harness::new();
    harness.script("all", &[Step::Write("all")]);
    let config = harness.config(1, false);
    let resolver = FakeResolver { dir: harness.dir.path().to_path_buf(), scripts: harness.scripts.clone() };
    let recorder = Recorder::default();
    let store = Store::open_existing(harness.dir.path()).expect("open store");
    let mut scheduler =
        Scheduler::new(&config, &resolver, &recorder, PathBuf::from("/nonexistent"), store, Tokens::counted(1));
    scheduler.submit_top(&[PathBuf::from("all")], true);
    scheduler.drain();
    let Some(Action::Spawn { .. }) = scheduler.next_action() else {
        panic!("expected the job to start: {:?}", recorder.events());
    };
    // Another connection sees what a run killed right now would leave.
    let reader = Store::open_read_only(harness.dir.path()).expect("open").expect("a database");
    let record = reader.file(Path::new("all")).expect("read").expect("a record");
    assert!(record.has(crate::store::flags::BUILDING));
}
