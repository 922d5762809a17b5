//! The milter wire format: length-prefixed frames, the MTA's commands and
//! the filter's responses (Sendmail's `libmilter` protocol, version 6, as
//! Postfix speaks it). Pure: bytes in, values out; every length is checked
//! before it is trusted.
//!
//! A frame is a 4-byte big-endian length, then that many bytes: a one-byte
//! command code and its data. Strings are NUL-terminated.

use thiserror::Error;

/// The protocol version this crate speaks.
pub const VERSION: u32 = 6;

/// Actions a filter may take (`SMFIF_*`), negotiated at the start.
pub mod action {
    /// Add headers.
    pub const ADD_HEADERS: u32 = 0x01;
    /// Replace the body.
    pub const CHANGE_BODY: u32 = 0x02;
    /// Add recipients.
    pub const ADD_RCPT: u32 = 0x04;
    /// Delete recipients.
    pub const DELETE_RCPT: u32 = 0x08;
    /// Change or delete headers.
    pub const CHANGE_HEADERS: u32 = 0x10;
    /// Quarantine (Postfix: the hold queue).
    pub const QUARANTINE: u32 = 0x20;
}

/// Protocol steps (`SMFIP_*`): which the MTA may leave out, and which it
/// need not wait for a reply to.
pub mod protocol {
    /// Do not send the connection.
    pub const NO_CONNECT: u32 = 0x01;
    /// Do not send HELO.
    pub const NO_HELO: u32 = 0x02;
    /// Do not send unknown SMTP commands.
    pub const NO_UNKNOWN: u32 = 0x100;
    /// Do not send DATA.
    pub const NO_DATA: u32 = 0x200;
    /// The MTA understands a `skip` reply to body chunks.
    pub const SKIP: u32 = 0x400;
    /// Send header values with their leading space.
    pub const HEADER_LEADING_SPACE: u32 = 0x10_0000;
    /// No reply to each header: the MTA sends the next without waiting.
    pub const NR_HEADER: u32 = 0x80;
    /// No reply to the connection.
    pub const NR_CONNECT: u32 = 0x1000;
    /// No reply to MAIL FROM.
    pub const NR_MAIL: u32 = 0x4000;
    /// No reply to RCPT TO.
    pub const NR_RCPT: u32 = 0x8000;
    /// No reply to the end of the headers.
    pub const NR_EOH: u32 = 0x4_0000;
}

/// Longest frame accepted by default: Postfix and Sendmail send body
/// chunks of at most 64 KiB; nothing legitimate comes near this.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// A malformed frame or command.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// The length prefix is zero or beyond the bound.
    #[error("a frame of {0} bytes (the limit is {1})")]
    FrameLength(usize, usize),
    /// The command's data is shorter than its fields.
    #[error("command {0:?} is truncated")]
    Truncated(char),
    /// A string field is missing its terminating NUL.
    #[error("command {0:?} has an unterminated string")]
    Unterminated(char),
    /// Not a command the MTA sends.
    #[error("unknown command code {0:#04x}")]
    UnknownCommand(u8),
}

/// What the MTA sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Option negotiation (`O`): version, offered actions, offered
    /// protocol steps.
    Negotiate {
        /// The MTA's protocol version.
        version: u32,
        /// Actions it allows.
        actions: u32,
        /// Protocol steps it can leave out.
        protocol: u32,
    },
    /// Macros for the next command (`D`): the command code, name/value pairs.
    Macros {
        /// Which command they belong to.
        stage: u8,
        /// Name and value pairs.
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// A client connected (`C`): its host name and address (as text).
    Connect {
        /// The client's host name.
        host: Vec<u8>,
        /// Its address, when the family has one.
        address: Vec<u8>,
    },
    /// HELO/EHLO (`H`).
    Helo(Vec<u8>),
    /// MAIL FROM (`M`): the sender, then ESMTP arguments.
    Mail(Vec<Vec<u8>>),
    /// RCPT TO (`R`): the recipient, then ESMTP arguments.
    Rcpt(Vec<Vec<u8>>),
    /// DATA (`T`).
    Data,
    /// One header (`L`): name, value.
    Header(Vec<u8>, Vec<u8>),
    /// End of headers (`N`).
    EndOfHeaders,
    /// A body chunk (`B`).
    Body(Vec<u8>),
    /// End of message (`E`), with a last body chunk (often empty).
    EndOfMessage(Vec<u8>),
    /// The message is abandoned (`A`); the connection goes on.
    Abort,
    /// The connection ends (`Q`).
    Quit,
    /// The connection ends and a new one starts on the same socket (`K`).
    QuitNewConnection,
    /// An unknown SMTP command (`U`).
    Unknown(Vec<u8>),
}

/// What the filter answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Option negotiation: version, actions, protocol steps.
    Negotiate {
        /// Version.
        version: u32,
        /// Actions the filter will take.
        actions: u32,
        /// Steps the MTA may leave out.
        protocol: u32,
    },
    /// Go on (`c`).
    Continue,
    /// Accept the message, no more filtering (`a`).
    Accept,
    /// Reject with the MTA's default text (`r`).
    Reject,
    /// Temporary failure (`t`).
    Tempfail,
    /// Accept and throw away (`d`).
    Discard,
    /// Skip the rest of this stage (`s`, body chunks only).
    Skip,
    /// Reply with this SMTP code and text (`y`), e.g. `550 5.7.1 text`.
    ReplyCode(String),
    /// Add a header at the end (`h`).
    AddHeader(String, String),
    /// Change the `index`-th (1-based) header of this name (`m`); an empty
    /// value deletes it.
    ChangeHeader(u32, String, String),
    /// Hold the message in quarantine with this reason (`q`).
    Quarantine(String),
}

/// One whole frame found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The command or response code.
    pub code: u8,
    /// The frame's data after the code.
    pub data: &'a [u8],
    /// How many bytes of the buffer the frame took, length prefix included.
    pub used: usize,
}

/// The next frame in `buffer`: `Ok(Some(frame))` when a whole frame is
/// there, `Ok(None)` when more bytes are needed.
pub fn next_frame(buffer: &[u8], max_frame: usize) -> Result<Option<Frame<'_>>, WireError> {
    let Some(prefix) = buffer.get(..4) else { return Ok(None) };
    let length = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if length == 0 || length > max_frame {
        return Err(WireError::FrameLength(length, max_frame));
    }
    let Some(frame) = buffer.get(4..4 + length) else { return Ok(None) };
    Ok(Some(Frame { code: frame[0], data: &frame[1..], used: 4 + length }))
}

/// Parses one command from its code and data.
pub fn parse(code: u8, data: &[u8]) -> Result<Command, WireError> {
    let name = code as char;
    let mut fields = Fields { data, code: name };
    let command = match code {
        b'O' => Command::Negotiate { version: fields.u32()?, actions: fields.u32()?, protocol: fields.u32()? },
        b'D' => {
            let stage = fields.byte()?;
            let mut pairs = Vec::new();
            while !fields.data.is_empty() {
                let name = fields.string()?;
                // Sendmail may end the list with a name and no value.
                let value = if fields.data.is_empty() { Vec::new() } else { fields.string()? };
                pairs.push((name, value));
            }
            Command::Macros { stage, pairs }
        }
        b'C' => {
            let host = fields.string()?;
            let family = fields.byte()?;
            let address = if family == b'U' || fields.data.is_empty() {
                Vec::new()
            } else {
                // Port first (2 bytes), then the address as text.
                fields.take(2)?;
                fields.string()?
            };
            Command::Connect { host, address }
        }
        b'H' => Command::Helo(fields.string()?),
        b'M' => Command::Mail(fields.strings()?),
        b'R' => Command::Rcpt(fields.strings()?),
        b'T' => Command::Data,
        b'L' => Command::Header(fields.string()?, fields.string()?),
        b'N' => Command::EndOfHeaders,
        b'B' => Command::Body(data.to_vec()),
        b'E' => Command::EndOfMessage(data.to_vec()),
        b'A' => Command::Abort,
        b'Q' => Command::Quit,
        b'K' => Command::QuitNewConnection,
        b'U' => Command::Unknown(fields.string().unwrap_or_else(|_| data.to_vec())),
        other => return Err(WireError::UnknownCommand(other)),
    };
    Ok(command)
}

/// Appends a response's frame to `out`.
pub fn encode(response: &Response, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let string = |out: &mut Vec<u8>, text: &str| {
        // A NUL inside would end the field early: drop any.
        out.extend(text.bytes().filter(|&b| b != 0));
        out.push(0);
    };
    match response {
        Response::Negotiate { version, actions, protocol } => {
            out.push(b'O');
            for value in [version, actions, protocol] {
                out.extend_from_slice(&value.to_be_bytes());
            }
        }
        Response::Continue => out.push(b'c'),
        Response::Accept => out.push(b'a'),
        Response::Reject => out.push(b'r'),
        Response::Tempfail => out.push(b't'),
        Response::Discard => out.push(b'd'),
        Response::Skip => out.push(b's'),
        Response::ReplyCode(text) => {
            out.push(b'y');
            string(out, text);
        }
        Response::AddHeader(name, value) => {
            out.push(b'h');
            string(out, name);
            string(out, value);
        }
        Response::ChangeHeader(index, name, value) => {
            out.push(b'm');
            out.extend_from_slice(&index.to_be_bytes());
            string(out, name);
            string(out, value);
        }
        Response::Quarantine(reason) => {
            out.push(b'q');
            string(out, reason);
        }
    }
    let length = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&length.to_be_bytes());
}

/// Reads the fields of one command's data.
struct Fields<'a> {
    data: &'a [u8],
    code: char,
}

impl Fields<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        if self.data.len() < n {
            return Err(WireError::Truncated(self.code));
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Result<Vec<u8>, WireError> {
        let end = self.data.iter().position(|&b| b == 0).ok_or(WireError::Unterminated(self.code))?;
        let value = self.data[..end].to_vec();
        self.data = &self.data[end + 1..];
        Ok(value)
    }

    /// NUL-terminated strings up to the end (at least one).
    fn strings(&mut self) -> Result<Vec<Vec<u8>>, WireError> {
        let mut values = vec![self.string()?];
        while !self.data.is_empty() {
            values.push(self.string()?);
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(code: u8, data: &[u8]) -> Vec<u8> {
        let mut out = ((data.len() + 1) as u32).to_be_bytes().to_vec();
        out.push(code);
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn frames_are_cut_at_their_length_and_wait_for_the_rest() {
        let bytes = frame(b'N', b"");
        assert_eq!(next_frame(&bytes[..3], 64), Ok(None));
        assert_eq!(next_frame(&bytes, 64), Ok(Some(Frame { code: b'N', data: b"", used: 5 })));
        let mut two = frame(b'H', b"mx.example\0");
        two.extend(frame(b'T', b""));
        let Frame { code, data, used } = next_frame(&two, 64).unwrap().unwrap();
        assert_eq!((code, parse(code, data)), (b'H', Ok(Command::Helo(b"mx.example".to_vec()))));
        assert_eq!(next_frame(&two[used..], 64).unwrap().unwrap().code, b'T');
    }

    #[test]
    fn lengths_beyond_the_bound_and_zero_are_errors() {
        assert_eq!(next_frame(&[0, 0, 0, 0], 64), Err(WireError::FrameLength(0, 64)));
        assert_eq!(next_frame(&[0x7f, 0, 0, 0, b'B'], 64), Err(WireError::FrameLength(0x7f00_0000, 64)));
    }

    #[test]
    fn commands_parse_as_postfix_sends_them() {
        let negotiate = [&6u32.to_be_bytes()[..], &0x1ffu32.to_be_bytes(), &0x1f_ffffu32.to_be_bytes()].concat();
        assert_eq!(parse(b'O', &negotiate), Ok(Command::Negotiate { version: 6, actions: 0x1ff, protocol: 0x1f_ffff }));
        assert_eq!(
            parse(b'C', b"client.example\x004\x00\x19127.0.0.1\0"),
            Ok(Command::Connect { host: b"client.example".to_vec(), address: b"127.0.0.1".to_vec() })
        );
        assert_eq!(
            parse(b'M', b"<a@example.org>\0SIZE=100\0"),
            Ok(Command::Mail(vec![b"<a@example.org>".to_vec(), b"SIZE=100".to_vec()]))
        );
        assert_eq!(
            parse(b'D', b"Ei\0ABC123\0{rcpt_addr}\0b@example.org\0"),
            Ok(Command::Macros {
                stage: b'E',
                pairs: vec![(b"i".to_vec(), b"ABC123".to_vec()), (b"{rcpt_addr}".to_vec(), b"b@example.org".to_vec())]
            })
        );
        assert_eq!(parse(b'L', b"Subject\0 hi\0"), Ok(Command::Header(b"Subject".to_vec(), b" hi".to_vec())));
    }

    #[test]
    fn broken_commands_are_errors_not_panics() {
        assert_eq!(parse(b'O', &[0, 0, 6]), Err(WireError::Truncated('O')));
        assert_eq!(parse(b'L', b"Subject"), Err(WireError::Unterminated('L')));
        assert_eq!(parse(b'R', b""), Err(WireError::Unterminated('R')));
        assert_eq!(parse(b'C', b"host\0"), Err(WireError::Truncated('C')));
        assert_eq!(parse(b'Z', b""), Err(WireError::UnknownCommand(b'Z')));
    }

    #[test]
    fn responses_encode_as_libmilter_expects() {
        let mut out = Vec::new();
        encode(&Response::AddHeader("X-A".into(), "b".into()), &mut out);
        assert_eq!(out, frame(b'h', b"X-A\0b\0"));
        out.clear();
        encode(&Response::ChangeHeader(2, "Subject".into(), "".into()), &mut out);
        assert_eq!(out, frame(b'm', b"\0\0\0\x02Subject\0\0"));
        out.clear();
        encode(&Response::ReplyCode("550 5.7.1 no\0pe".into()), &mut out);
        assert_eq!(out, frame(b'y', b"550 5.7.1 nope\0"));
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_cleanly(code in any::<u8>(), data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(code, &data);
        }

        #[test]
        fn any_stream_is_cut_into_frames_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut rest = &bytes[..];
            while let Ok(Some(Frame { used, .. })) = next_frame(rest, 128) {
                prop_assert!(used > 4 && used <= rest.len());
                rest = &rest[used..];
            }
        }
    }
}
