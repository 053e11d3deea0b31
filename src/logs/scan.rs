//! Reading a store file: a plain file from an offset (`pread`, so one fd serves every
//! reader), a `.gz` rotation whole, and the decode loop both the index and reads run, so
//! the two always agree on what each byte is.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use super::Stream;
use super::decode::{Decoder, Step};

/// Bytes read from a store file at a time.
const CHUNK: usize = 256 * 1024;

/// A reader at raw offset `from` of a plain file.
pub(crate) struct PRead<'a> {
    pub file: &'a File,
    pub pos: u64,
    /// Reads stop here.
    pub end: u64,
}

impl Read for PRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos) as usize;
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// One decoded event of a scan.
pub(crate) enum Ev<'a> {
    /// A record ending at raw offset `end`.
    Rec {
        end: u64,
        stream: Stream,
        text: &'a [u8],
    },
    /// Undecodable bytes from raw offset `at`.
    Skip { at: u64, reason: &'static str },
}

/// Decodes `src` (positioned at raw offset `from`) until it ends or `on` returns false;
/// `at_end`: the end of `src` is the end of the file (a cut-short record is then skipped).
/// Returns the raw offset after the last record used.
pub(crate) fn scan(
    src: &mut dyn Read,
    from: u64,
    dec: &mut Decoder,
    at_end: bool,
    mut on: impl FnMut(Ev<'_>) -> bool,
) -> io::Result<u64> {
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut pos = from; // raw offset of buf[0]
    let mut eof = false;
    loop {
        if !eof {
            let old = buf.len();
            buf.resize(old + CHUNK, 0);
            let n = loop {
                match src.read(&mut buf[old..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r?,
                }
            };
            buf.truncate(old + n);
            eof = n == 0;
        }
        let mut start = 0;
        loop {
            match dec.next(&buf[start..], eof && at_end) {
                Step::More => break,
                Step::Rec { used, stream, text } => {
                    let end = pos + (start + used) as u64;
                    start += used;
                    if !on(Ev::Rec {
                        end,
                        stream,
                        text: &text,
                    }) {
                        return Ok(end);
                    }
                }
                Step::Skip { used, reason } => {
                    let at = pos + start as u64;
                    start += used;
                    on(Ev::Skip { at, reason });
                }
            }
            if start == buf.len() {
                break;
            }
        }
        buf.drain(..start);
        pos += start as u64;
        if eof {
            return Ok(pos);
        }
    }
}

/// The whole decompressed content of a `.gz` file (`MultiGzDecoder`: several members are one
/// stream, as `zcat` reads them).
pub(crate) fn decompress(file: &File) -> io::Result<Vec<u8>> {
    let len = file.metadata()?.len();
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(PRead {
        file,
        pos: 0,
        end: len,
    })
    .read_to_end(&mut out)?;
    Ok(out)
}
