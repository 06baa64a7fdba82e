//! A minimal HTTP/1.1 client: one keep-alive connection, one request at a time, answers with
//! a `Content-Length`.
//!
//! A load generator shares the machine's cores with the server it measures, so every cycle it
//! spends is taken from the server. A general-purpose client (pools, redirects, header maps)
//! costs several times what a closed loop needs: write one buffer, read one answer. This is
//! that loop and nothing more; it refuses what it does not handle (chunked bodies) rather than
//! guess.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest answer head or body read; Beckon's answers are a few hundred bytes.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// An answer: its status and body.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// One connection to a server.
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The server said `connection: close`: the next request needs a new connection.
    closing: bool,
}

impl Connection {
    /// Connects, with Nagle's algorithm off (each request is one write).
    pub async fn open(addr: SocketAddr) -> io::Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buf: Vec::with_capacity(4096),
            closing: false,
        })
    }

    /// Whether the server asked to close the connection after its last answer.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Sends one whole request (head and body, as [`post`] or [`get`] build it) and reads
    /// its answer.
    pub async fn send(&mut self, request: &[u8]) -> io::Result<Answer> {
        self.stream.write_all(request).await?;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end])
            .map_err(|_| invalid("the answer's head is not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| invalid("no status line"))?;
        let mut length = None;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| invalid("a bad content-length"))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(invalid(
                    "a chunked answer (this client reads content-length only)",
                ));
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")
            {
                self.closing = true;
            }
        }
        let length = match (length, status) {
            (Some(n), _) => n,
            (None, 204 | 304) | (None, 100..=199) => 0,
            (None, _) => return Err(invalid("an answer without content-length")),
        };
        if length > MAX_ANSWER_BYTES {
            return Err(invalid("an answer larger than 1 MiB"));
        }
        while self.buf.len() < head_end + length {
            self.fill().await?;
        }
        let body = self.buf[head_end..head_end + length].to_vec();
        self.buf.drain(..head_end + length);
        Ok(Answer { status, body })
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.buf.len() > MAX_ANSWER_BYTES {
            return Err(invalid("an answer head larger than 1 MiB"));
        }
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        Ok(())
    }
}

/// A `POST` of a JSON body from a page of `origin`, as a browser's `fetch` sends it.
pub fn post(addr: SocketAddr, path: &str, origin: &str, user_agent: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nUser-Agent: {user_agent}\r\nContent-Type: application/json\r\nAccept: */*\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// A plain `GET`.
pub fn get(addr: SocketAddr, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\n\r\n").into_bytes()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}
