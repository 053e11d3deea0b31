//! The log store formats, one record at a time: pure functions over bytes, so every corrupt
//! case is a unit test on a fixture.
//!
//! Each `Decoder::next` call sees bytes that start at a record boundary and says how many it
//! used and what they were: a record (its stream and the text the container wrote, the store's
//! wrapping removed) or bytes to skip, with the reason (a run of NULs after a crash, a truncated
//! last record, a record over `MAX_RECORD`, undecodable bytes). Lines a store split are not
//! joined here: a piece carries no newline, so the concatenated text of a stream is the joined
//! line, byte for byte as `docker logs` prints it.

use std::borrow::Cow;

use serde::Deserialize;

use super::{Format, Stream};

/// Largest record decoded; longer ones are skipped whole (Docker splits lines at 16 KiB and
/// CRI runtimes at 16 KiB too, so a longer record is corruption).
pub const MAX_RECORD: usize = 1 << 20;

/// What the next bytes are.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// `used` bytes made one record of `stream` whose text is `text`.
    Rec {
        /// Bytes of input the record took (its framing included).
        used: usize,
        /// The stream the container wrote it to.
        stream: Stream,
        /// The text as the container wrote it, without the store's wrapping.
        text: Cow<'a, [u8]>,
    },
    /// `used` bytes cannot be decoded, for `reason`.
    Skip {
        /// Bytes of input to pass over.
        used: usize,
        /// Why they cannot be decoded (logged once per file).
        reason: &'static str,
    },
    /// The record is not complete yet: call again with more bytes.
    More,
}

/// One pass over one file.
#[derive(Debug, Clone)]
pub struct Decoder {
    format: Format,
    /// Inside a line longer than `MAX_RECORD`: skip up to its end.
    skipping: bool,
    /// The unescaped text of the last JSON record that needed unescaping (every line Docker
    /// writes ends in an escaped `\n`): reused, so a record costs no allocation.
    scratch: Vec<u8>,
}

/// Docker `local`'s `LogEntry` (moby `api/types/plugins/logdriver/entry.proto`), written
/// framed as a 4-byte big-endian length, the message, and the length again
/// (moby `daemon/logger/local/local.go`, `marshal`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogEntry {
    /// `stdout` or `stderr`.
    #[prost(string, tag = "1")]
    pub source: String,
    /// When it was written, in nanoseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub time_nano: i64,
    /// The text, without its newline.
    #[prost(bytes = "vec", tag = "3")]
    pub line: Vec<u8>,
    /// Set on every piece of a line Docker split at 16 KiB, the last piece included (moby's
    /// `messageToProto`: `Partial = PLogMetaData != nil`); [`LogEntry::meta`] says which piece
    /// is the last.
    #[prost(bool, tag = "4")]
    pub partial: bool,
    /// The partial-line metadata of a piece (`PartialLogEntryMetadata`).
    #[prost(message, optional, tag = "5")]
    pub meta: Option<PartialMeta>,
}

impl LogEntry {
    /// Whether the line ends with this record: a whole line, or the last piece of a split one.
    /// Docker 20.10's `docker logs` prints no newline after a last piece (it looks at
    /// `partial` only) and so runs a long line into the next one; the container wrote one.
    pub fn ends_line(&self) -> bool {
        !self.partial || self.meta.as_ref().is_some_and(|m| m.last)
    }
}

/// moby `PartialLogEntryMetadata`: which line a piece belongs to and whether it is the last.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PartialMeta {
    /// The line's last piece: the container's newline follows it.
    #[prost(bool, tag = "1")]
    pub last: bool,
    /// The line's id, the same on all its pieces.
    #[prost(string, tag = "2")]
    pub id: String,
    /// The piece's number, from 1.
    #[prost(int32, tag = "3")]
    pub ordinal: i32,
}

#[derive(Deserialize)]
struct JsonLine<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(borrow)]
    stream: Cow<'a, str>,
}

fn stream_of(name: &str) -> Option<Stream> {
    match name {
        "stdout" => Some(Stream::Stdout),
        "stderr" => Some(Stream::Stderr),
        _ => None,
    }
}

impl Decoder {
    /// A decoder of `format`, at the start of a file.
    pub fn new(format: Format) -> Decoder {
        Decoder {
            format,
            skipping: false,
            scratch: Vec::new(),
        }
    }

    /// A decoder of the same format at a record boundary.
    pub fn fresh(&self) -> Decoder {
        Decoder::new(self.format)
    }

    /// Inside a record being skipped (a position here is no record boundary).
    pub fn in_record(&self) -> bool {
        self.skipping
    }

    /// The next record in `buf`; `eof` says no more bytes will follow (a record cut short is
    /// then skipped as truncated instead of waited for).
    pub fn next<'a>(&'a mut self, buf: &'a [u8], eof: bool) -> Step<'a> {
        if buf.is_empty() {
            return Step::More;
        }
        if self.format == Format::Local {
            return local(buf, eof);
        }
        if self.skipping {
            return match memchr::memchr(b'\n', buf) {
                Some(pos) => {
                    self.skipping = false;
                    Step::Skip {
                        used: pos + 1,
                        reason: "a record over 1 MiB",
                    }
                }
                None => {
                    self.skipping = !eof;
                    Step::Skip {
                        used: buf.len(),
                        reason: "a record over 1 MiB",
                    }
                }
            };
        }
        if let Some(n) = nul_run(buf) {
            return n;
        }
        let window = &buf[..buf.len().min(MAX_RECORD)];
        let Some(pos) = memchr::memchr(b'\n', window) else {
            if buf.len() >= MAX_RECORD {
                let used = match memchr::memchr(b'\n', &buf[MAX_RECORD..]) {
                    Some(pos) => MAX_RECORD + pos + 1,
                    None => {
                        self.skipping = !eof;
                        buf.len()
                    }
                };
                return Step::Skip {
                    used,
                    reason: "a record over 1 MiB",
                };
            }
            return truncated(buf, eof);
        };
        let line = &buf[..=pos];
        let parsed = match self.format {
            Format::JsonFile => json(&line[..pos], &mut self.scratch),
            _ => cri(line),
        };
        match parsed {
            Ok((stream, text)) => Step::Rec {
                used: pos + 1,
                stream,
                text,
            },
            Err(reason) => Step::Skip {
                used: pos + 1,
                reason,
            },
        }
    }
}

fn nul_run(buf: &[u8]) -> Option<Step<'static>> {
    let n = buf.iter().take_while(|&&b| b == 0).count();
    (n > 0).then_some(Step::Skip {
        used: n,
        reason: "a run of NUL bytes",
    })
}

fn truncated(buf: &[u8], eof: bool) -> Step<'static> {
    if eof {
        Step::Skip {
            used: buf.len(),
            reason: "a truncated last record",
        }
    } else {
        Step::More
    }
}

/// One `json-file` line (without its newline). Invalid UTF-8 (Docker itself never writes it)
/// passes through with replacement characters. `scratch` receives the text when it must be
/// unescaped.
fn json<'a>(
    line: &'a [u8],
    scratch: &'a mut Vec<u8>,
) -> Result<(Stream, Cow<'a, [u8]>), &'static str> {
    if let Some((stream, text)) = json_fast_in(line, scratch) {
        return Ok((stream, Cow::Borrowed(text)));
    }
    json_full(line)
}

/// [`json_fast_in`] with a text of its own (for tests).
#[cfg(test)]
pub(super) fn json_fast(line: &[u8]) -> Option<(Stream, Cow<'_, [u8]>)> {
    let mut scratch = Vec::new();
    let (stream, text) = json_fast_in(line, &mut scratch)?;
    Some((stream, Cow::Owned(text.to_vec())))
}

/// The shape Docker and nerdctl write (`{"log":"...","stream":"std...",...}`), decoded without
/// a general JSON parser: about 3x faster, which is most of a first `grep` through a view.
/// `None`: anything else (other field order, a surrogate pair, invalid UTF-8), left to
/// [`json_full`], which decodes the same text. The text is `line`'s own bytes when nothing is
/// escaped, else unescaped into `out`.
fn json_fast_in<'a>(line: &'a [u8], out: &'a mut Vec<u8>) -> Option<(Stream, &'a [u8])> {
    let rest = line.strip_prefix(br#"{"log":""#)?;
    let mut unescaped = false;
    let (mut i, mut start) = (0, 0);
    loop {
        let j = i + memchr::memchr2(b'"', b'\\', &rest[i..])?;
        if rest[j] == b'"' {
            let after = &rest[j + 1..];
            let stream = if after.starts_with(br#","stream":"stdout""#) {
                Stream::Stdout
            } else if after.starts_with(br#","stream":"stderr""#) {
                Stream::Stderr
            } else {
                return None;
            };
            let text = if unescaped {
                out.extend_from_slice(&rest[start..j]);
                &out[..]
            } else {
                &rest[..j]
            };
            std::str::from_utf8(text).ok()?;
            return Some((stream, text));
        }
        if !unescaped {
            out.clear();
            unescaped = true;
        }
        let v = &mut *out;
        v.extend_from_slice(&rest[start..j]);
        let c = *rest.get(j + 1)?;
        let plain = match c {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 8,
            b'f' => 12,
            b'u' => {
                let hex = std::str::from_utf8(rest.get(j + 2..j + 6)?).ok()?;
                let ch = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
                let mut enc = [0; 4];
                v.extend_from_slice(ch.encode_utf8(&mut enc).as_bytes());
                i = j + 6;
                start = i;
                continue;
            }
            _ => return None,
        };
        v.push(plain);
        i = j + 2;
        start = i;
    }
}

/// [`json`] through `serde_json`, for every line [`json_fast`] leaves.
pub(super) fn json_full(line: &[u8]) -> Result<(Stream, Cow<'_, [u8]>), &'static str> {
    let owned = |l: JsonLine<'_>| -> Result<(Stream, Cow<'static, [u8]>), &'static str> {
        let s = stream_of(&l.stream).ok_or("a record of an unknown stream")?;
        Ok((s, Cow::Owned(l.log.into_owned().into_bytes())))
    };
    match serde_json::from_slice::<JsonLine<'_>>(line) {
        Ok(l) => {
            let s = stream_of(&l.stream).ok_or("a record of an unknown stream")?;
            Ok((
                s,
                match l.log {
                    Cow::Borrowed(t) => Cow::Borrowed(t.as_bytes()),
                    Cow::Owned(t) => Cow::Owned(t.into_bytes()),
                },
            ))
        }
        Err(_) if std::str::from_utf8(line).is_err() => {
            let text = String::from_utf8_lossy(line);
            match serde_json::from_str::<JsonLine<'_>>(&text) {
                Ok(l) => owned(l),
                Err(_) => Err("a line that is not a JSON log record"),
            }
        }
        Err(_) => Err("a line that is not a JSON log record"),
    }
}

/// One CRI line, newline included: `<time> <stream> <tags> <text>`; tag `P` marks a piece of
/// a longer line (no newline is added), anything else a full line. The text is borrowed with
/// the line's own newline when it is a full line.
fn cri(line: &[u8]) -> Result<(Stream, Cow<'_, [u8]>), &'static str> {
    const BAD: &str = "a line that is not a CRI log record";
    let body = &line[..line.len() - 1];
    let mut parts = body.splitn(4, |&b| b == b' ');
    let time = parts.next().ok_or(BAD)?;
    let stream = parts.next().ok_or(BAD)?;
    let tags = parts.next().ok_or(BAD)?;
    if time.is_empty() || !time[0].is_ascii_digit() {
        return Err(BAD);
    }
    let stream = std::str::from_utf8(stream)
        .ok()
        .and_then(stream_of)
        .ok_or(BAD)?;
    let partial = tags.split(|&b| b == b':').any(|t| t == b"P");
    let start = (time.len() + stream_len(stream) + tags.len() + 3).min(line.len() - 1);
    let text = if partial {
        &line[start..line.len() - 1]
    } else if start >= body.len() {
        &b"\n"[..]
    } else {
        &line[start..]
    };
    Ok((stream, Cow::Borrowed(text)))
}

fn stream_len(s: Stream) -> usize {
    match s {
        Stream::Stdout => 6,
        Stream::Stderr => 6,
        Stream::All => 0,
    }
}

/// A run of NULs in a `local` file: the next record's length begins with NULs too, so the
/// run ends where a well-framed record (length, message, same length again) starts.
fn local_resync(buf: &[u8], eof: bool) -> Step<'_> {
    let n = buf.iter().take_while(|&&b| b == 0).count();
    for k in n.saturating_sub(3)..=n {
        let rest = &buf[k..];
        if rest.len() < 8 {
            break;
        }
        let size = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if size == 0 || size > MAX_RECORD {
            continue;
        }
        if rest.len() < size + 8 {
            return if eof { skip_nuls(n) } else { Step::More };
        }
        if rest[size + 4..size + 8] == rest[..4] {
            return skip_nuls(k);
        }
    }
    if n == buf.len() && !eof {
        return Step::More;
    }
    skip_nuls(n.max(4).min(buf.len()))
}

fn skip_nuls(used: usize) -> Step<'static> {
    Step::Skip {
        used,
        reason: "a run of NUL bytes",
    }
}

/// One `local` record.
fn local(buf: &[u8], eof: bool) -> Step<'_> {
    if buf.len() < 4 {
        return truncated(buf, eof);
    }
    let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if size == 0 {
        return local_resync(buf, eof);
    }
    if size > MAX_RECORD {
        return Step::Skip {
            used: 4,
            reason: "a record length over 1 MiB",
        };
    }
    if buf.len() < size + 8 {
        return truncated(buf, eof);
    }
    let used = size + 8;
    let entry = match <LogEntry as prost::Message>::decode(&buf[4..4 + size]) {
        Ok(e) => e,
        Err(_) => {
            return Step::Skip {
                used,
                reason: "an undecodable protobuf record",
            };
        }
    };
    let Some(stream) = stream_of(&entry.source) else {
        return Step::Skip {
            used,
            reason: "a record of an unknown stream",
        };
    };
    let ends = entry.ends_line();
    let mut text = entry.line;
    if ends {
        text.push(b'\n');
    }
    Step::Rec {
        used,
        stream,
        text: Cow::Owned(text),
    }
}
