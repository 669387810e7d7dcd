//! Connections from inner commands. A request arrives, the scheduler handles
//! it (at once or after a build), the reply leaves and the connection closes.
//! A peer that disconnects early loses its reply.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use nix::sys::epoll::{EpollEvent, EpollFlags};

use crate::constants::exit;
use crate::protocol::{self, Reply};
use crate::scheduler::ClientId;

use super::{Engine, Source};

/// A connection from an inner command: the request arrives, then the reply
/// leaves, then the connection closes.
pub(super) struct Connection {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Whether the request was handed to the scheduler.
    dispatched: bool,
}

impl Engine<'_> {
    pub(super) fn accept_clients(&mut self) {
        loop {
            match self.listener.accept() {
                Ok(Some(stream)) => {
                    let id = self.next_client;
                    self.next_client += 1;
                    let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
                    if self.epoll.add(stream.as_fd(), EpollEvent::new(flags, Source::Client(id).encode())).is_ok() {
                        let connection =
                            Connection { stream, input: Vec::new(), output: Vec::new(), dispatched: false };
                        self.clients.insert(id, connection);
                    }
                }
                Ok(None) | Err(_) => return,
            }
        }
    }

    pub(super) fn serve_client(&mut self, id: ClientId, flags: EpollFlags) {
        if flags.contains(EpollFlags::EPOLLOUT) {
            self.flush_client(id);
        }
        if flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLERR)
        {
            self.read_client(id);
        }
    }

    fn read_client(&mut self, id: ClientId) {
        let Some(connection) = self.clients.get_mut(&id) else {
            return;
        };
        let mut closed = false;
        let mut chunk = [0u8; 8192];
        loop {
            match connection.stream.read(&mut chunk) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(count) => connection.input.extend_from_slice(&chunk[..count]),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        if !connection.dispatched {
            match protocol::frame_len(&connection.input) {
                Ok(Some(len)) if connection.input.len() >= len => {
                    connection.dispatched = true;
                    match protocol::Request::decode(&connection.input[..len]) {
                        Ok(request) => {
                            self.wait_started(request.job);
                            self.scheduler.request(id, request);
                        }
                        Err(err) => self.send_reply(id, &Reply::error(exit::FAILED, format!("redo: error: {err}"))),
                    }
                    return;
                }
                Ok(_) => {}
                Err(err) => {
                    connection.dispatched = true;
                    return self.send_reply(id, &Reply::error(exit::FAILED, format!("redo: error: {err}")));
                }
            }
        }
        if closed {
            self.drop_client(id);
        }
    }

    pub(super) fn send_reply(&mut self, id: ClientId, reply: &Reply) {
        let Some(connection) = self.clients.get_mut(&id) else {
            return;
        };
        connection.output = reply.encode();
        self.flush_client(id);
    }

    fn flush_client(&mut self, id: ClientId) {
        let Some(connection) = self.clients.get_mut(&id) else {
            return;
        };
        while !connection.output.is_empty() {
            match connection.stream.write(&connection.output) {
                Ok(count) => {
                    connection.output.drain(..count);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    let flags = EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP;
                    let mut event = EpollEvent::new(flags, Source::Client(id).encode());
                    let _ = self.epoll.modify(connection.stream.as_fd(), &mut event);
                    return;
                }
                Err(_) => break,
            }
        }
        self.close_client(id);
    }

    /// Forgets a connection whose peer went away before its reply.
    fn drop_client(&mut self, id: ClientId) {
        self.scheduler.client_gone(id);
        self.close_client(id);
    }

    fn close_client(&mut self, id: ClientId) {
        if let Some(connection) = self.clients.remove(&id) {
            let _ = self.epoll.delete(connection.stream.as_fd());
        }
    }
}
