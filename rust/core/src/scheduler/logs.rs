//! A job's stderr: shown a whole line at a time while the job runs, and
//! stored with its target when the job ends.
//!
//! The script writes stderr to a capture file, never to a pipe, so a process
//! that it left running can go on writing without blocking the build or
//! dying of SIGPIPE. The engine reads the file at offsets as it grows.

use std::path::Path;

use crate::report::EventKind;
use crate::store::LogRecord;

use super::{Job, JobId, NodeId, Scheduler, State};

/// A line longer than this is shown in pieces.
const MAX_LINE: usize = 64 * 1024;

/// At most this much of a job's stderr is read at once.
const READ_CHUNK: usize = 1 << 20;

/// At most this much of a job's stderr is stored; the end is kept.
const MAX_STORED: u64 = 16 << 20;

impl Scheduler<'_> {
    /// Path of the file that receives a job's stderr, when stderr is logged.
    pub fn log_path(&self, job: JobId) -> Option<&Path> {
        self.jobs.get(&job)?.files.log().map(|log| log.path())
    }

    /// Reports the whole lines that a job wrote to stderr since the last call.
    pub fn job_output(&mut self, job: JobId) {
        self.read_output(job, false);
    }

    /// Reads what a job wrote to stderr and reports it line by line; at the
    /// end of the job, an unfinished last line too.
    pub(super) fn read_output(&mut self, job: JobId, at_end: bool) {
        let Some(running) = self.jobs.get_mut(&job) else { return };
        let Some(log) = running.files.log() else { return };
        let mut lines: Vec<Vec<u8>> = Vec::new();
        loop {
            let data = log.read_from(running.log_offset, READ_CHUNK).unwrap_or_default();
            if data.is_empty() {
                break;
            }
            running.log_offset += data.len() as u64;
            running.partial.extend_from_slice(&data);
            while let Some(end) = running.partial.iter().position(|&byte| byte == b'\n') {
                let mut line: Vec<u8> = running.partial.drain(..=end).collect();
                line.pop();
                lines.push(line);
            }
            if running.partial.len() > MAX_LINE {
                lines.push(std::mem::take(&mut running.partial));
            }
        }
        if at_end && !running.partial.is_empty() {
            lines.push(std::mem::take(&mut running.partial));
        }
        let node = running.node;
        // Jobs that hold a token run; the others wait for inner commands and
        // cannot print meanwhile, so they do not make output overlap.
        let active = self.jobs.values().filter(|job| job.token.is_some()).count() as u64;
        for line in lines {
            self.report_count(EventKind::Output, node, String::from_utf8_lossy(&line).into_owned(), active);
        }
    }

    /// Records, in the log of the job whose request started the build of
    /// `id`, the point where that build starts, for `redo-log` to replay.
    pub(super) fn mark_child(&mut self, id: NodeId) {
        // A target rebuilt while another one's dependencies were checked
        // goes in the log of the script whose request started that check.
        // Each node has one requester, but a dependency cycle can make
        // them a loop: the walk takes at most one step per node.
        let mut parent = self.graph[id].requested_by;
        let mut job = None;
        for _ in 0..self.graph.len() {
            let Some(node) = parent else { break };
            if let State::Running(running) = self.graph[node].state {
                job = Some(running);
                break;
            }
            parent = self.graph[node].requested_by;
        }
        let Some(job) = job else { return };
        let key = self.graph[id].key.clone();
        if let Some(running) = self.jobs.get_mut(&job) {
            let offset = running.files.log().and_then(|log| log.size().ok()).unwrap_or(0);
            running.children.push((offset, key));
        }
    }

    /// Returns what a finished job's log record holds.
    pub(super) fn log_record(&self, job: &Job) -> Option<LogRecord> {
        let log = job.files.log()?;
        let size = log.size().unwrap_or(0);
        let start = size.saturating_sub(MAX_STORED);
        let content = log.read_from(start, MAX_STORED as usize).unwrap_or_default();
        let children = job.children.iter().map(|(offset, key)| (offset.saturating_sub(start), key.clone())).collect();
        Some(LogRecord { run: self.run_id, content, children, live: None })
    }
}
