//! Starting a job for an out-of-date target, and recording what it built.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use crate::constants::env;
use crate::engine::Config;
use crate::output::{JobFiles, Produced};
use crate::paths;
use crate::report::EventKind;
use crate::resolve::DoMatch;
use crate::spawn::Background;
use crate::stamp::{FileKind, Stamp, now_ns, target_hash};
use crate::store::LogRecord;
use crate::store::{DepKind, flags};
use crate::tokens::Handoff;

use super::state::Pending;
use super::{Action, ExitStatus, FailedDep, Failure, Job, JobId, JobSpec, NodeId, Outcome, Scheduler, State};

/// Names of the environment variables that a surrounding build may have
/// left and that each job gets afresh.
fn is_run_variable(name: &OsStr) -> bool {
    let name = name.as_bytes();
    name.starts_with(b"REDO_") || name == b"REDO" || (name.starts_with(b"REDORS_") && name != env::PYTHON.as_bytes())
}

/// Builds the command line of a job. A `.do` file whose first line starts
/// with `#!` runs with that interpreter and its arguments. Any other runs as
/// `sh -e`, with `-v` and `-x` when requested.
pub(crate) fn command_line(
    found: &DoMatch,
    dollar3: &Path,
    xtrace: bool,
    verbose: bool,
) -> std::io::Result<Vec<OsString>> {
    // The first line decides the interpreter.
    let mut head = [0u8; 1024];
    let mut file = std::fs::File::open(&found.dofile)?;
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..])? {
            0 => break,
            count => filled += count,
        }
    }
    let first_line = head[..filled].split(|&byte| byte == b'\n').next().unwrap_or_default();

    let name = found.dofile.file_name().unwrap_or_default();
    // A name starting with '-' would read as an option of the interpreter.
    let script = if name.as_bytes().starts_with(b"-") {
        Path::new(".").join(name).into_os_string()
    } else {
        name.to_os_string()
    };

    let mut argv: Vec<OsString> = match first_line.strip_prefix(b"#!") {
        Some(interpreter) => interpreter
            .split(|byte| byte.is_ascii_whitespace())
            .filter(|word| !word.is_empty())
            .map(|word| OsString::from_vec(word.to_vec()))
            .collect(),
        None => Vec::new(),
    };
    if argv.is_empty() {
        let mut flags = String::from("-e");
        if verbose {
            flags.push('v');
        }
        if xtrace {
            flags.push('x');
        }
        argv = vec!["sh".into(), flags.into()];
    }
    argv.push(script);
    argv.push(found.arg1.clone());
    argv.push(found.arg2.clone());
    argv.push(paths::relative(dollar3, found.dir()).into_os_string());
    Ok(argv)
}

/// Builds the part of the jobs' environment that is the same for the whole
/// run: the caller's variables without those of an earlier build, the inner
/// commands first on PATH, and the run's settings.
pub(super) fn base_env(config: &Config, socket: &Path, handoff: Option<&Handoff>) -> Vec<(OsString, OsString)> {
    let mut vars: Vec<(OsString, OsString)> =
        config.env.iter().filter(|(name, _)| !is_run_variable(name)).cloned().collect();
    if let Some(makeflags) = handoff.and_then(|handoff| handoff.makeflags.clone()) {
        vars.retain(|(name, _)| name != "MAKEFLAGS" && name != "MFLAGS");
        vars.push(("MAKEFLAGS".into(), makeflags));
    }
    let redo = match &config.client_dir {
        Some(dir) => {
            let mut value = dir.clone().into_os_string();
            value.push(":");
            match vars.iter_mut().find(|(name, _)| name == "PATH") {
                Some((_, old)) => {
                    value.push(&*old);
                    *old = value;
                }
                None => {
                    value.push("/usr/local/bin:/usr/bin:/bin");
                    vars.push(("PATH".into(), value));
                }
            }
            dir.join("redo").into_os_string()
        }
        None => OsString::from("redo"),
    };
    let mut set = |name: &str, value: OsString| vars.push((name.into(), value));
    set("REDO", redo);
    set("REDO_BASE", config.top.clone().into_os_string());
    set("REDO_STARTDIR", config.startdir.clone().into_os_string());
    for (on, name) in [
        (config.xtrace, "REDO_XTRACE"),
        (config.verbose, "REDO_VERBOSE"),
        (config.keep_going, "REDO_KEEP_GOING"),
        (config.debug, "REDO_DEBUG"),
        (config.shuffle, "REDO_SHUFFLE"),
    ] {
        if on {
            set(name, "1".into());
        }
    }
    set(env::ENGINE, socket.as_os_str().to_os_string());
    if let Some(python) = &config.python {
        set(env::PYTHON, python.clone());
    }
    vars
}

impl Scheduler<'_> {
    /// Starts the job of a queued node; the caller checked that a token is free.
    pub(super) fn start_job(&mut self, id: NodeId) {
        let State::Queued { found, missing } = std::mem::replace(&mut self.graph[id].state, State::Idle) else {
            return;
        };
        if !self.ensure_store() {
            return self.finish(id, Outcome::Failed);
        }
        if !self.lock_target(id) {
            return;
        }
        let job_id = self.next_job;
        self.next_job += 1;
        let dofile = self.relative(&found.dofile);
        let mut files = match JobFiles::prepare(&self.graph[id].abs) {
            Ok(files) => files,
            Err(err) => return self.fail(id, Failure::Output { dofile, err }),
        };
        let log = match self.config.log {
            true => match self.captures.take() {
                Ok(log) => Some(log),
                Err(err) => return self.fail(id, Failure::Output { dofile, err }),
            },
            false => None,
        };
        match self.captures.take() {
            Ok(capture) => files.attach(capture, log),
            Err(err) => {
                if let Some(log) = log {
                    self.captures.give_back(log, false);
                }
                return self.fail(id, Failure::Output { dofile, err });
            }
        }
        let argv = match command_line(&found, &files.dollar3, self.config.xtrace, self.config.verbose) {
            Ok(argv) => argv,
            Err(err) => {
                files.release(&mut self.captures, false);
                return self.fail(id, Failure::Io { path: dofile, err });
            }
        };
        let stdout_for_child = match files.capture().map(|capture| capture.for_child()) {
            Some(Ok(file)) => file,
            Some(Err(err)) => {
                files.release(&mut self.captures, false);
                return self.fail(id, Failure::Spawn { dofile, err });
            }
            None => return self.finish(id, Outcome::Failed),
        };
        let stderr_for_child = match files.log().map(|log| log.for_child()).transpose() {
            Ok(file) => file,
            Err(err) => {
                files.release(&mut self.captures, false);
                return self.fail(id, Failure::Spawn { dofile, err });
            }
        };
        let live = files.log().map(|log| log.path().to_path_buf());

        // The target depends on every candidate .do file that did not exist,
        // then on the one that ran.
        let mut deps: Vec<(NodeId, DepKind)> =
            missing.iter().map(|path| (self.graph.intern(&self.config.top, path), DepKind::IfCreate)).collect();
        let do_node = self.graph.intern(&self.config.top, &found.dofile);
        if matches!(self.graph[do_node].state, State::Idle) {
            self.visit(do_node, false);
        }
        deps.push((do_node, DepKind::IfChange));

        // The BUILDING mark is committed before the script can touch
        // anything (next_action commits before it hands out a Spawn), so that
        // a run killed from here on rebuilds the target next time instead of
        // mistaking the new file for a hand edit. The log row names the file
        // that receives stderr while the build runs, for redo-log --follow.
        // Without logging it is emptied, so that redo-log does not show the
        // output of an older build.
        self.load(id);
        let record = self.record_mut(id);
        record.is_target = true;
        record.set(flags::BUILDING, true);
        let log = LogRecord { run: self.run_id, live, ..LogRecord::default() };
        self.pending.push(Pending::Log { target: id, log });
        self.mark_child(id);

        let env = self.job_env(id, &found, job_id);
        let inherit = self.tokens.handoff().map(|handoff| handoff.inherit.clone()).unwrap_or_default();
        let spec = JobSpec {
            argv,
            cwd: found.dir().to_path_buf(),
            env,
            stdout: stdout_for_child,
            stderr: stderr_for_child,
            inherit,
        };
        self.jobs.insert(
            job_id,
            Job {
                node: id,
                files,
                dofile,
                deps,
                always: false,
                stamp: None,
                outstanding: Vec::new(),
                token: self.tokens.take(),
                failed_deps: Vec::new(),
                log_offset: 0,
                partial: Vec::new(),
                children: Vec::new(),
            },
        );
        self.graph[id].state = State::Running(job_id);
        self.actions.push_back(Action::Spawn { job: job_id, spec });
    }

    /// Reports that a job's process started.
    pub fn job_started(&mut self, job: JobId, pid: u32) {
        if let Some(running) = self.jobs.get(&job) {
            self.report_count(EventKind::Build, running.node, String::new(), u64::from(pid));
        }
    }

    /// Returns the environment of a job: the run's shared part plus what
    /// depends on the job.
    fn job_env(&self, id: NodeId, found: &DoMatch, job: JobId) -> Vec<(OsString, OsString)> {
        let mut vars = Vec::with_capacity(self.base_env.len() + 5);
        vars.extend_from_slice(&self.base_env);
        let mut set = |name: &str, value: OsString| vars.push((name.into(), value));
        set("REDO_PWD", paths::relative(found.dir(), &self.config.startdir).into_os_string());
        set("REDO_TARGET", found.arg1.clone());
        set("REDO_DEPTH", "  ".repeat(self.graph[id].depth + 1).into());
        set("REDO_RUNID", self.run_id.to_string().into());
        set(env::JOB, job.to_string().into());
        vars
    }

    /// Handles a job whose process could not be started.
    pub fn spawn_failed(&mut self, job: JobId, err: std::io::Error) {
        let Some(mut running) = self.jobs.remove(&job) else {
            return;
        };
        if let Some(token) = running.token.take() {
            self.tokens.put(token);
        }
        running.files.discard();
        running.files.release(&mut self.captures, false);
        self.mark_failed(running.node, None);
        self.unlock_after_write.push(running.node);
        self.fail(running.node, Failure::Spawn { dofile: running.dofile, err });
    }

    /// Frees the token of a job whose script exited with success and left
    /// a result that can be installed, so that the next job can start before
    /// this one's result is installed and recorded. (After a failure, the
    /// token waits: without --keep-going, nothing new may start.) The
    /// script's last lines of stderr are shown first. When a script waits
    /// for this target alone, the token stays for that script to go on
    /// with, so that with -j1 the build stays depth first.
    pub fn release_job(&mut self, job: JobId, status: ExitStatus) {
        self.read_output(job, true);
        let Some(running) = self.jobs.get(&job) else { return };
        if !status.success() || running.files.inspect().is_err() || self.resumes_a_script(running.node) {
            return;
        }
        if let Some(token) = self.jobs.get_mut(&job).and_then(|running| running.token.take()) {
            self.tokens.put(token);
        }
    }

    /// Notes, when a job's process exited and left others in its group, how
    /// much it wrote to stdout: what those processes write later is not
    /// part of the target.
    pub fn freeze_stdout(&mut self, job: JobId) {
        if let Some(running) = self.jobs.get_mut(&job) {
            running.files.freeze_stdout();
        }
    }

    /// Handles the exit of a job's process. `background` lists the processes
    /// it started that still run; they may still hold its stdout.
    pub fn job_exited(&mut self, job: JobId, status: ExitStatus, background: &[Background]) {
        self.read_output(job, true);
        let Some(running) = self.jobs.remove(&job) else {
            return;
        };
        let id = running.node;
        self.complete_job(running, status, background);
        // Another run may look at the target once its new state is committed.
        self.unlock_after_write.push(id);
        let failed = self.graph[id].outcome() != Some(Outcome::Ok);
        self.report_count(EventKind::Done, id, String::new(), u64::from(failed));
    }

    fn complete_job(&mut self, mut running: Job, status: ExitStatus, background: &[Background]) {
        if let Some(token) = running.token.take() {
            self.tokens.put(token);
        }
        let id = running.node;
        let shared_stdout = !background.is_empty() || running.files.stdout_shared();
        if !background.is_empty() {
            let list: Vec<String> =
                background.iter().map(|process| format!("{} ({})", process.pid, process.name)).collect();
            let message = format!(
                "{} for {} exited but left processes running: {}; not waiting for them \
                 (--wait-background waits)",
                running.dofile.display(),
                self.quoted(id),
                list.join(", ")
            );
            self.report(EventKind::Background, id, message);
        }
        let log = self.log_record(&running);
        if !status.success() {
            running.files.discard();
            running.files.release(&mut self.captures, shared_stdout);
            self.mark_failed(id, log);
            let abandoned = |dep: &FailedDep| matches!(dep, FailedDep::Failed(dep) if self.abandoned.contains(dep));
            if !running.failed_deps.is_empty() && running.failed_deps.iter().all(abandoned) {
                // The script stopped because the run gave up on what it
                // asked for, after another target's failure.
                self.abandoned.insert(id);
                return self.finish(id, Outcome::Failed);
            }
            // Name a dependency that failed on its own, not one that the run
            // gave up on after that failure.
            let failed_dep = running
                .failed_deps
                .iter()
                .find(|dep| match dep {
                    FailedDep::Failed(dep) => self.reported_failures.contains(dep),
                    FailedDep::Cycle(_) => true,
                })
                .or(running.failed_deps.first())
                .copied();
            let failure = Failure::Script { status, dofile: running.dofile, failed_dep };
            return self.fail(id, failure);
        }
        let installed = running.files.install(shared_stdout);
        if installed.is_err() {
            running.files.discard();
        }
        running.files.release(&mut self.captures, shared_stdout);
        let produced = match installed {
            Ok(produced) => produced,
            Err(err) => {
                self.mark_failed(id, log);
                return self.fail(id, Failure::Output { dofile: running.dofile, err });
            }
        };
        match self.record_build(id, &running, produced, log) {
            Ok(()) => {
                self.graph[id].built = true;
                self.finish(id, Outcome::Ok);
            }
            Err(err) => self.fail(id, Failure::Io { path: self.display(id), err }),
        }
    }

    /// Records that a target's build failed, with its log when there is one.
    ///
    /// The target file as the script left it is recorded too, because a
    /// script that writes `$1` fails but its file stays. That file is the
    /// build's doing, not a hand edit, so the next run builds the target
    /// again instead of keeping the file as a source.
    fn mark_failed(&mut self, id: NodeId, log: Option<LogRecord>) {
        let abs = &self.graph[id].abs;
        let left = Stamp::read_target(abs).ok().map(|stamp| (stamp, target_hash(abs, &stamp).ok().flatten()));
        let record = self.record_mut(id);
        if let Some((stamp, hash)) = left {
            record.stamp = stamp;
            record.hash = hash;
            record.seen_ns = now_ns();
        }
        record.set(flags::BUILDING, false);
        record.set(flags::FAILED, true);
        if let Some(log) = log {
            self.pending.push(Pending::Log { target: id, log });
        }
    }

    /// Stores the new state of a built target and its dependencies.
    fn record_build(
        &mut self,
        id: NodeId,
        job: &Job,
        produced: Produced,
        log: Option<LogRecord>,
    ) -> std::io::Result<()> {
        let abs = self.graph[id].abs.clone();
        let stamp = Stamp::read_target(&abs)?;
        let hash = target_hash(&abs, &stamp)?;
        let old = self.graph[id].record.clone().unwrap_or_default();
        // A symlink's hash covers only its text, but the scripts that depend
        // on it read the file behind it: every rebuild of it is a change.
        let identity = match produced {
            Produced::Nothing => job.stamp,
            _ if stamp.kind == FileKind::Symlink => job.stamp,
            _ => job.stamp.or(hash),
        };
        let old_identity = if old.built_run > 0 { old.stamp_hash.or(old.hash) } else { None };
        let changed = identity.is_none() || identity != old_identity;

        let mut deps = Vec::with_capacity(job.deps.len());
        for &(dep, kind) in &job.deps {
            if deps.iter().any(|&(other, other_kind)| other == dep && other_kind == kind) {
                continue;
            }
            self.load(dep);
            if self.graph[dep].record.is_none() {
                let dep_stamp = Stamp::read(&self.graph[dep].abs)?;
                self.refresh(dep, dep_stamp)?;
            }
            deps.push((dep, kind));
        }

        let run = self.run_id;
        let record = self.record_mut(id);
        record.is_target = true;
        record.stamp = stamp;
        record.seen_ns = now_ns();
        record.hash = hash;
        record.stamp_hash = job.stamp;
        record.flags = if job.always { flags::ALWAYS } else { 0 };
        record.built_run = run;
        if changed {
            record.generation += 1;
        }

        // Every dependency needs a row id before an edge can name it; the
        // write saves unsaved records first, which assigns the ids.
        for &(dep, _) in &deps {
            if self.graph[dep].record.as_ref().is_some_and(|record| record.id.is_none()) {
                self.record_mut(dep);
            }
        }
        let deps = deps
            .into_iter()
            .map(|(dep, kind)| (dep, kind, self.graph[dep].record.as_ref().map_or(0, |record| record.generation)))
            .collect();
        self.pending.push(Pending::Deps { target: id, deps });
        if let Some(log) = log {
            self.pending.push(Pending::Log { target: id, log });
        }
        Ok(())
    }

    /// Removes the temporary files of every running job and marks their
    /// targets failed; called when the run is interrupted, after the engine
    /// stopped the processes.
    pub fn abandon_jobs(&mut self) {
        let jobs: Vec<JobId> = self.jobs.keys().copied().collect();
        let mut abandoned = Vec::with_capacity(jobs.len());
        for job in jobs {
            // What the script wrote until it stopped (a cleanup trap's lines
            // too) is shown and kept for redo-log.
            self.read_output(job, true);
            if let Some(mut running) = self.jobs.remove(&job) {
                let log = self.log_record(&running);
                running.files.discard();
                running.files.release(&mut self.captures, true);
                self.mark_failed(running.node, log);
                self.graph[running.node].state = State::Done(Outcome::Failed);
                abandoned.push(running.node);
            }
        }
        self.unlock_after_write.extend(abandoned);
        self.commit();
    }
}
