//! A WebSocket client written by hand over a blocking TCP socket, for what a real client
//! library would not do: never answer a ping (it only answers when read, and reading answers),
//! or cost next to nothing per socket (the memory test holds thousands).
//!
//! Each test binary uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A frame from the server.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// A text frame.
    Text(String),
    /// A ping.
    Ping,
    /// A pong.
    Pong,
    /// A close frame and its code (1005 when it carries none).
    Close(u16),
}

/// Opens `GET {path}` on `addr` (`127.0.0.1:PORT`) as `user_agent` from `origin` and completes
/// the handshake. Reads time out after `patience`.
pub fn open(
    addr: &str,
    path: &str,
    origin: &str,
    user_agent: &str,
    patience: Duration,
) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(patience)).expect("read timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Origin: {origin}\r\nUser-Agent: {user_agent}\r\n\r\n"
    )
    .expect("handshake sent");
    // The answer's head is read byte by byte, so no byte of a first frame is taken with it.
    let mut head = Vec::new();
    let mut reader = BufReader::with_capacity(1, &mut s);
    while !head.ends_with(b"\r\n\r\n") {
        let n = reader.read_until(b'\n', &mut head).expect("handshake read");
        assert!(n > 0, "the server closed during the handshake");
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// Sends one masked text frame.
pub fn send_text(s: &mut TcpStream, text: &str) {
    let payload = text.as_bytes();
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![0x81];
    match payload.len() {
        len @ 0..=125 => out.push(0x80 | len as u8),
        len => {
            out.push(0x80 | 126);
            out.extend_from_slice(&u16::try_from(len).expect("under 64 KiB").to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&out).expect("frame sent");
}

/// Reads the next frame.
pub fn read(s: &mut TcpStream) -> Frame {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).expect("a frame from the server");
    let len = match head[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).expect("length");
            u16::from_be_bytes(l) as usize
        }
        127 => {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).expect("length");
            u64::from_be_bytes(l) as usize
        }
        len => len as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).expect("payload");
    match head[0] & 0x0f {
        0x1 => Frame::Text(String::from_utf8(payload).expect("UTF-8 text")),
        0x8 if payload.len() >= 2 => Frame::Close(u16::from_be_bytes([payload[0], payload[1]])),
        0x8 => Frame::Close(1005),
        0x9 => Frame::Ping,
        0xa => Frame::Pong,
        op => panic!("opcode {op} from the server"),
    }
}

/// Reads frames until a text frame, skipping pings and pongs (which it does not answer).
pub fn read_text(s: &mut TcpStream) -> String {
    loop {
        match read(s) {
            Frame::Text(t) => return t,
            Frame::Ping | Frame::Pong => continue,
            Frame::Close(code) => panic!("closed with {code} where a text frame was due"),
        }
    }
}
