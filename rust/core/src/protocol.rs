//! The wire format between the inner commands and the engine.
//!
//! An inner command connects to the engine's Unix socket, sends one request
//! frame and reads one reply frame. A frame is the magic `rdrs`, the protocol
//! version (u16), the body length (u32), then the body. Integers are little
//! endian; byte strings are a u32 length followed by the bytes, so file names
//! may hold any byte but NUL.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::constants::PROTOCOL_VERSION;

const MAGIC: &[u8; 4] = b"rdrs";
const HEADER_LEN: usize = 10;
/// Largest body accepted, to reject garbage before allocating for it.
pub const MAX_BODY: usize = 256 << 20;

/// Operation that an inner command requests from the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Depend on the named files and bring them up to date.
    Ifchange = 1,
    /// Depend on the named files not existing.
    Ifcreate = 2,
    /// Mark the calling target as out of date in every run.
    Always = 3,
    /// Set the calling target's stamp; the one argument is the hash.
    Stamp = 4,
    /// Build the named targets whether or not they are up to date.
    Redo = 5,
    /// List the `.do` files that would be tried for the one named target.
    Whichdo = 6,
    /// Forget which targets this run has checked, so that they are checked again.
    FlushCache = 7,
}

impl Command {
    fn from_code(code: u8) -> Option<Command> {
        Some(match code {
            1 => Command::Ifchange,
            2 => Command::Ifcreate,
            3 => Command::Always,
            4 => Command::Stamp,
            5 => Command::Redo,
            6 => Command::Whichdo,
            7 => Command::FlushCache,
            _ => return None,
        })
    }
}

/// One request from an inner command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Operation to perform.
    pub command: Command,
    /// Identity of the calling job, from its environment.
    pub job: u64,
    /// Working directory of the caller; relative names are relative to it.
    pub cwd: PathBuf,
    /// The command's arguments.
    pub args: Vec<OsString>,
}

/// The engine's reply to a request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// Exit status for the inner command.
    pub status: i32,
    /// Bytes for the inner command to write to its stdout.
    pub stdout: Vec<u8>,
    /// Bytes for the inner command to write to its stderr.
    pub stderr: Vec<u8>,
}

impl Reply {
    /// Returns a reply with only an exit status.
    pub fn status(status: i32) -> Reply {
        Reply { status, ..Reply::default() }
    }

    /// Returns a failing reply whose message the command prints on stderr.
    pub fn error(status: i32, message: impl fmt::Display) -> Reply {
        Reply { status, stdout: Vec::new(), stderr: format!("{message}\n").into_bytes() }
    }
}

/// A malformed frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid message from an inner command: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn frame(body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Returns the total length of the frame at the start of `buffer`, once its
/// header has arrived.
pub fn frame_len(buffer: &[u8]) -> Result<Option<usize>, ProtocolError> {
    if buffer.len() < HEADER_LEN {
        return Ok(None);
    }
    if &buffer[..4] != MAGIC {
        return Err(ProtocolError("bad magic".into()));
    }
    let version = u16::from_le_bytes([buffer[4], buffer[5]]);
    if version != PROTOCOL_VERSION {
        return Err(ProtocolError(format!(
            "protocol version {version}, but this engine speaks {PROTOCOL_VERSION}; \
             an inner command from another redors version is first on PATH"
        )));
    }
    let len = u32::from_le_bytes([buffer[6], buffer[7], buffer[8], buffer[9]]) as usize;
    if len > MAX_BODY {
        return Err(ProtocolError(format!("body of {len} bytes is too large")));
    }
    Ok(Some(HEADER_LEN + len))
}

/// Reads fields of a frame body in order.
struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], ProtocolError> {
        if self.data.len() < count {
            return Err(ProtocolError("truncated body".into()));
        }
        let (head, tail) = self.data.split_at(count);
        self.data = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, ProtocolError> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn u64(&mut self) -> Result<u64, ProtocolError> {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(bytes))
    }

    fn bytes(&mut self) -> Result<&'a [u8], ProtocolError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
}

fn body_of(frame: &[u8]) -> Result<&[u8], ProtocolError> {
    match frame_len(frame)? {
        Some(len) if len == frame.len() => Ok(&frame[HEADER_LEN..]),
        _ => Err(ProtocolError("frame length does not match".into())),
    }
}

impl Request {
    /// Encodes the request as one frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.push(self.command as u8);
        body.extend_from_slice(&self.job.to_le_bytes());
        put_bytes(&mut body, self.cwd.as_os_str().as_bytes());
        body.extend_from_slice(&(self.args.len() as u32).to_le_bytes());
        for arg in &self.args {
            put_bytes(&mut body, arg.as_bytes());
        }
        frame(body)
    }

    /// Decodes one whole frame.
    pub fn decode(frame: &[u8]) -> Result<Request, ProtocolError> {
        let mut cursor = Cursor { data: body_of(frame)? };
        let code = cursor.u8()?;
        let command = Command::from_code(code).ok_or_else(|| ProtocolError(format!("unknown command {code}")))?;
        let job = cursor.u64()?;
        let cwd = PathBuf::from(OsString::from_vec(cursor.bytes()?.to_vec()));
        let count = cursor.u32()? as usize;
        let mut args = Vec::with_capacity(count.min(4096));
        for _ in 0..count {
            args.push(OsString::from_vec(cursor.bytes()?.to_vec()));
        }
        Ok(Request { command, job, cwd, args })
    }
}

impl Reply {
    /// Encodes the reply as one frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&self.status.to_le_bytes());
        put_bytes(&mut body, &self.stdout);
        put_bytes(&mut body, &self.stderr);
        frame(body)
    }

    /// Decodes one whole frame.
    pub fn decode(frame: &[u8]) -> Result<Reply, ProtocolError> {
        let mut cursor = Cursor { data: body_of(frame)? };
        let status = cursor.u32()? as i32;
        let stdout = cursor.bytes()?.to_vec();
        let stderr = cursor.bytes()?.to_vec();
        Ok(Reply { status, stdout, stderr })
    }
}

/// Sends `request` to the engine listening at `socket` and waits for the reply.
pub fn call(socket: &Path, request: &Request) -> io::Result<Reply> {
    let mut stream = UnixStream::connect(socket)?;
    stream.write_all(&request.encode())?;
    let mut buffer = Vec::with_capacity(256);
    let mut chunk = [0u8; 4096];
    loop {
        let count = match stream.read(&mut chunk) {
            Ok(count) => count,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if count == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the build engine closed the connection without answering",
            ));
        }
        buffer.extend_from_slice(&chunk[..count]);
        let invalid = |err: ProtocolError| io::Error::new(io::ErrorKind::InvalidData, err);
        if let Some(len) = frame_len(&buffer).map_err(invalid)? {
            if buffer.len() >= len {
                return Reply::decode(&buffer[..len]).map_err(invalid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_keeps_odd_bytes() {
        let request = Request {
            command: Command::Ifchange,
            job: 42,
            cwd: PathBuf::from("/top/sub dir"),
            args: vec![OsString::from("hello wörld.out"), OsString::from_vec(vec![0xff, b'x'])],
        };
        let frame = request.encode();
        assert_eq!(frame_len(&frame).expect("header"), Some(frame.len()));
        assert_eq!(Request::decode(&frame).expect("decode"), request);
    }

    #[test]
    fn reply_round_trip() {
        let reply = Reply { status: 1, stdout: b"a.do\n".to_vec(), stderr: b"no\n".to_vec() };
        assert_eq!(Reply::decode(&reply.encode()).expect("decode"), reply);
    }

    #[test]
    fn partial_header_waits_for_more() {
        assert_eq!(frame_len(b"rdrs").expect("partial"), None);
    }

    #[test]
    fn wrong_version_is_explained() {
        let mut frame = Reply::status(0).encode();
        frame[4] = 99;
        let err = frame_len(&frame).expect_err("must fail");
        assert!(err.to_string().contains("another redors version"), "{err}");
    }

    #[test]
    fn truncated_body_is_rejected() {
        let mut frame =
            Request { command: Command::Redo, job: 1, cwd: PathBuf::from("/"), args: vec![OsString::from("x")] }
                .encode();
        frame.truncate(frame.len() - 1);
        let len = (frame.len() - HEADER_LEN) as u32;
        frame[6..10].copy_from_slice(&len.to_le_bytes());
        assert!(Request::decode(&frame).is_err());
    }
}
