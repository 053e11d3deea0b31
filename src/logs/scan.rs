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

/// Raw bytes of a store file read ahead of the decoder: `data[start..end]` are the file's
/// bytes from raw offset `pos`. A read of a view keeps its buffer for the next read (see
/// `store.rs`), so a sequential reader reads each byte of the store once, and the buffer,
/// zeroed once when it grows, is never zeroed again.
#[derive(Default)]
pub(crate) struct RawBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
    /// The raw offset of `data[start]`.
    pub(crate) pos: u64,
}

impl RawBuf {
    /// An empty buffer at raw offset `pos`.
    pub(crate) fn at(pos: u64) -> RawBuf {
        RawBuf {
            pos,
            ..RawBuf::default()
        }
    }

    /// Forgets the bytes held: the buffer is at raw offset `pos` now.
    pub(crate) fn reset(&mut self, pos: u64) {
        (self.start, self.end, self.pos) = (0, 0, pos);
    }

    /// The raw offset after the bytes held: where the next read of the file starts.
    pub(crate) fn held_end(&self) -> u64 {
        self.pos + (self.end - self.start) as u64
    }

    /// Reads up to `CHUNK` more bytes from `src` after those held; 0 at its end.
    fn fill(&mut self, src: &mut dyn Read) -> io::Result<usize> {
        if self.data.len() - self.end < CHUNK {
            self.data.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
            if self.data.len() - self.end < CHUNK {
                self.data.resize(self.end + CHUNK, 0);
            }
        }
        loop {
            match src.read(&mut self.data[self.end..self.end + CHUNK]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => {
                    let n = r?;
                    self.end += n;
                    return Ok(n);
                }
            }
        }
    }
}

/// Decodes `src` (positioned at raw offset `from`) until it ends or `on` returns false;
/// `at_end`: the end of `src` is the end of the file (a cut-short record is then skipped).
/// Returns the raw offset after the last record used.
pub(crate) fn scan(
    src: &mut dyn Read,
    from: u64,
    dec: &mut Decoder,
    at_end: bool,
    on: impl FnMut(Ev<'_>) -> bool,
) -> io::Result<u64> {
    scan_buf(src, &mut RawBuf::at(from), dec, at_end, on)
}

/// [`scan`] starting with the bytes `rb` holds, then those of `src` (which must be positioned
/// at `rb.held_end()`). When `on` returns false, `rb` keeps the bytes read after that record,
/// for a scan that goes on from there.
pub(crate) fn scan_buf(
    src: &mut dyn Read,
    rb: &mut RawBuf,
    dec: &mut Decoder,
    at_end: bool,
    mut on: impl FnMut(Ev<'_>) -> bool,
) -> io::Result<u64> {
    let mut eof = false;
    loop {
        while rb.start < rb.end {
            match dec.next(&rb.data[rb.start..rb.end], eof && at_end) {
                Step::More => break,
                Step::Rec { used, stream, text } => {
                    rb.start += used;
                    rb.pos += used as u64;
                    if !on(Ev::Rec {
                        end: rb.pos,
                        stream,
                        text: &text,
                    }) {
                        return Ok(rb.pos);
                    }
                }
                Step::Skip { used, reason } => {
                    let at = rb.pos;
                    rb.start += used;
                    rb.pos += used as u64;
                    on(Ev::Skip { at, reason });
                }
            }
        }
        if eof {
            return Ok(rb.pos);
        }
        eof = rb.fill(src)? == 0;
    }
}

/// Most bytes a `.gz` rotation may decompress to (128 MiB): more than any runtime writes
/// before it rotates (Docker's `local` driver rotates at 20 MB by default), and what bounds the
/// memory a planted file can cost (a rootless user controls the directory of their logs: 4.6 MB
/// of gzip can hold 1 GiB of zeros).
pub(crate) const MAX_GZ: u64 = 128 << 20;

/// The whole decompressed content of a `.gz` file (`MultiGzDecoder`: several members are one
/// stream, as `zcat` reads them).
///
/// # Errors
///
/// The read or decompression error (`InvalidInput`/`InvalidData` for a file that is not
/// gzip, `UnexpectedEof` for one still being written), and `FileTooLarge` for a file that
/// decompresses to more than [`MAX_GZ`] bytes.
pub(crate) fn decompress(file: &File) -> io::Result<Vec<u8>> {
    let len = file.metadata()?.len();
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(PRead {
        file,
        pos: 0,
        end: len,
    })
    .take(MAX_GZ + 1)
    .read_to_end(&mut out)?;
    if out.len() as u64 > MAX_GZ {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("decompresses to more than {} MiB", MAX_GZ >> 20),
        ));
    }
    Ok(out)
}
