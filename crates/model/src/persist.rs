//! Saving and loading a [`Model`]: a crash-safe, checksummed file.
//!
//! Layout (little-endian):
//!
//! | bytes | field |
//! | --- | --- |
//! | 8 | magic `STRLMODL` |
//! | 4 | format version ([`FORMAT_VERSION`]) |
//! | 1 + 3 | `table_bits`, zero padding |
//! | 4 + 4 + 8 + 4 | the saving configuration: `min_spam`, `min_ham`, target, floor (informative) |
//! | 4 × 8 | examples (spam, ham), class weights (spam, ham) |
//! | 4 | halvings |
//! | 8 | buckets in use |
//! | 4 + 4 | calibration scores (spam, ham) |
//! | 4 | senders |
//! | 8 | body length |
//! | 32 | BLAKE3 of the body followed by every header byte before this field |
//!
//! The body: for each bucket in use, in order, the number of empty buckets
//! before it (LEB128) and its two `u16` counters; then the spam and the ham
//! calibration scores (`f32`, oldest first); then each sender in key order:
//! its hashed identity (`u64`) and its spam and ham examples (`u32` each).
//!
//! Version 1 (before the senders) is not read: the agent rebuilds the model
//! from its stored examples, as after any unreadable snapshot.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::calibration::{CALIBRATION_WINDOW, Window};
use crate::model::{Model, ModelConfig};

/// The version of the file layout this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;

const MAGIC: &[u8; 8] = b"STRLMODL";
const HEADER_LEN: usize = 8 + 4 + 4 + 20 + 32 + 4 + 8 + 8 + 4 + 8 + 32;
const CHECKSUM_AT: usize = HEADER_LEN - 32;

/// Why a model file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be opened or read.
    #[error("cannot read the model file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file does not start with the model magic.
    #[error("{path} is not a starling model file; move it away or point the agent at another path")]
    NotAModel {
        /// The file.
        path: PathBuf,
    },
    /// The file was written in a format this build does not read.
    #[error("{path} has model format version {found}, this build reads version {supported}; retrain the model")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The file is shorter than its header says.
    #[error("{path} is truncated ({found} of {expected} bytes); restore it from a backup or retrain the model")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The length the header announces.
        expected: u64,
        /// The length found.
        found: u64,
    },
    /// The file's content is inconsistent or fails its checksum.
    #[error("{path} is corrupt ({reason}); restore it from a backup or retrain the model")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// The file's table has another size than the configuration asks for.
    #[error(
        "{path} has a table of 2^{file} buckets but the configuration asks for 2^{config}; keep table_bits at {file} or retrain the model"
    )]
    TableSizeMismatch {
        /// The file.
        path: PathBuf,
        /// `table_bits` in the file.
        file: u8,
        /// `table_bits` in the configuration.
        config: u8,
    },
}

impl LoadError {
    /// Whether trying again may help (an I/O error other than a missing
    /// file); a bad file stays bad.
    pub fn is_transient(&self) -> bool {
        matches!(self, LoadError::Io { source, .. } if source.kind() != io::ErrorKind::NotFound)
    }

    /// Whether the file does not exist (a new model is in order).
    pub fn is_not_found(&self) -> bool {
        matches!(self, LoadError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// The fixed-size header, decoded.
struct Header {
    table_bits: u8,
    examples: [u64; 2],
    weights: [u64; 2],
    halvings: u32,
    used: u64,
    scores: [u32; 2],
    senders: u32,
    body_len: u64,
}

impl Model {
    /// Saves the model crash-safely: writes a temporary file in the same
    /// directory, syncs it, renames it over `path` and syncs the directory,
    /// so `path` holds either the old or the new model, whole.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
        let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
        let written = self.write_file(&tmp).and_then(|()| fs::rename(&tmp, path));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written?;
        sync_dir(dir)
    }

    /// Loads a model saved by [`Model::save`]. The policy fields of
    /// `config` (minimum examples, target, floor) are taken from `config`;
    /// its `table_bits` must match the file's. Any damaged, truncated or
    /// foreign file is an error, never a panic.
    pub fn load(path: &Path, config: ModelConfig) -> Result<Model, LoadError> {
        let io = |source| LoadError::Io { path: path.to_owned(), source };
        let corrupt = |reason| LoadError::Corrupt { path: path.to_owned(), reason };
        let mut file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut header = [0u8; HEADER_LEN];
        if file_len < HEADER_LEN as u64 {
            let mut start = Vec::new();
            file.read_to_end(&mut start).map_err(io)?;
            if !start.starts_with(MAGIC) && !MAGIC.starts_with(&start) {
                return Err(LoadError::NotAModel { path: path.to_owned() });
            }
            return Err(LoadError::Truncated { path: path.to_owned(), expected: HEADER_LEN as u64, found: file_len });
        }
        file.read_exact(&mut header).map_err(io)?;
        let head = decode_header(path, &header)?;
        let model_config =
            ModelConfig { table_bits: config.table_bits.clamp(crate::MIN_TABLE_BITS, crate::MAX_TABLE_BITS), ..config };
        if head.table_bits != model_config.table_bits {
            return Err(LoadError::TableSizeMismatch {
                path: path.to_owned(),
                file: head.table_bits,
                config: model_config.table_bits,
            });
        }
        let expected = HEADER_LEN as u64 + head.body_len;
        if file_len < expected {
            return Err(LoadError::Truncated { path: path.to_owned(), expected, found: file_len });
        }
        if file_len > expected {
            return Err(corrupt("bytes after the end of the model"));
        }
        let mut body = vec![0u8; head.body_len as usize];
        file.read_exact(&mut body).map_err(io)?;
        let mut hasher = blake3::Hasher::new();
        hasher.update(&body);
        hasher.update(&header[..CHECKSUM_AT]);
        if hasher.finalize().as_bytes() != &header[CHECKSUM_AT..] {
            return Err(corrupt("checksum mismatch"));
        }
        decode_body(&head, model_config, &body).ok_or_else(|| corrupt("inconsistent body"))
    }

    fn write_file(&self, tmp: &Path) -> io::Result<()> {
        let mut file = File::create(tmp)?;
        file.write_all(&[0u8; HEADER_LEN])?;
        let mut hasher = blake3::Hasher::new();
        let (used, body_len) = {
            let mut out =
                HashingWriter { inner: BufWriter::with_capacity(1 << 16, &mut file), hasher: &mut hasher, len: 0 };
            let used = self.write_body(&mut out)?;
            out.inner.flush()?;
            (used, out.len)
        };
        let header = self.header(used, body_len);
        hasher.update(&header[..CHECKSUM_AT]);
        let mut header = header;
        header[CHECKSUM_AT..].copy_from_slice(hasher.finalize().as_bytes());
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&header)?;
        file.sync_all()
    }

    /// Writes the body; returns the number of buckets in use.
    fn write_body(&self, out: &mut impl Write) -> io::Result<u64> {
        let mut used = 0u64;
        let mut gap = 0u32;
        let mut varint = Vec::with_capacity(5);
        for &[spam, ham] in &self.table {
            if spam == 0 && ham == 0 {
                gap += 1;
                continue;
            }
            varint.clear();
            put_varint(&mut varint, gap);
            out.write_all(&varint)?;
            out.write_all(&spam.to_le_bytes())?;
            out.write_all(&ham.to_le_bytes())?;
            gap = 0;
            used += 1;
        }
        for window in &self.scores {
            for score in window.arrival() {
                out.write_all(&score.to_le_bytes())?;
            }
        }
        for (sender, [spam, ham]) in self.senders.sorted() {
            out.write_all(&sender.to_le_bytes())?;
            out.write_all(&spam.to_le_bytes())?;
            out.write_all(&ham.to_le_bytes())?;
        }
        Ok(used)
    }

    fn header(&self, used: u64, body_len: u64) -> [u8; HEADER_LEN] {
        let mut h = Vec::with_capacity(HEADER_LEN);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        h.extend_from_slice(&[self.config.table_bits, 0, 0, 0]);
        h.extend_from_slice(&self.config.min_spam.to_le_bytes());
        h.extend_from_slice(&self.config.min_ham.to_le_bytes());
        h.extend_from_slice(&self.config.target_false_positive_rate.to_le_bytes());
        h.extend_from_slice(&self.config.threshold_floor.to_le_bytes());
        for value in self.examples.iter().chain(&self.weights) {
            h.extend_from_slice(&value.to_le_bytes());
        }
        h.extend_from_slice(&self.halvings.to_le_bytes());
        h.extend_from_slice(&used.to_le_bytes());
        for window in &self.scores {
            h.extend_from_slice(&(window.len() as u32).to_le_bytes());
        }
        h.extend_from_slice(&(self.senders.len() as u32).to_le_bytes());
        h.extend_from_slice(&body_len.to_le_bytes());
        h.resize(HEADER_LEN, 0);
        h.try_into().expect("the header has HEADER_LEN bytes")
    }
}

fn decode_header(path: &Path, header: &[u8; HEADER_LEN]) -> Result<Header, LoadError> {
    if &header[..8] != MAGIC {
        return Err(LoadError::NotAModel { path: path.to_owned() });
    }
    let mut r = Reader { bytes: &header[8..CHECKSUM_AT] };
    let version = r.u32().unwrap_or(0);
    if version != FORMAT_VERSION {
        return Err(LoadError::UnsupportedVersion { path: path.to_owned(), found: version, supported: FORMAT_VERSION });
    }
    let corrupt = || LoadError::Corrupt { path: path.to_owned(), reason: "impossible header values" };
    let head = (|| {
        let table_bits = r.take(4)?[0];
        r.take(20)?; // the saving configuration, informative only
        let examples = [r.u64()?, r.u64()?];
        let weights = [r.u64()?, r.u64()?];
        let halvings = r.u32()?;
        let used = r.u64()?;
        let scores = [r.u32()?, r.u32()?];
        let senders = r.u32()?;
        let body_len = r.u64()?;
        Some(Header { table_bits, examples, weights, halvings, used, scores, senders, body_len })
    })()
    .ok_or_else(corrupt)?;
    let plausible = (crate::MIN_TABLE_BITS..=crate::MAX_TABLE_BITS).contains(&head.table_bits)
        && head.used <= 1u64 << head.table_bits
        && head.scores.iter().all(|&n| n as usize <= CALIBRATION_WINDOW)
        && head.senders as usize <= crate::MAX_SENDERS
        && head.body_len
            <= head.used * 9 + u64::from(head.scores[0] + head.scores[1]) * 4 + u64::from(head.senders) * 16;
    if plausible { Ok(head) } else { Err(corrupt()) }
}

fn decode_body(head: &Header, config: ModelConfig, body: &[u8]) -> Option<Model> {
    let mut model = Model::new(config);
    let mut r = Reader { bytes: body };
    let mut at = 0usize;
    for _ in 0..head.used {
        at = at.checked_add(r.varint()? as usize)?;
        let spam = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
        let ham = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
        *model.table.get_mut(at)? = [spam, ham];
        at += 1;
    }
    for (class, &count) in head.scores.iter().enumerate() {
        let mut window = Window::default();
        for _ in 0..count {
            let score = f32::from_le_bytes(r.take(4)?.try_into().ok()?);
            if !(0.0..=1.0).contains(&score) {
                return None;
            }
            window.push(score);
        }
        model.scores[class] = window;
    }
    let mut previous = None;
    for _ in 0..head.senders {
        let sender = r.u64()?;
        let counts = [r.u32()?, r.u32()?];
        if previous.is_some_and(|p| p >= sender) || counts == [0, 0] {
            return None;
        }
        previous = Some(sender);
        model.senders.insert(sender, counts);
    }
    if !r.bytes.is_empty() {
        return None;
    }
    model.examples = head.examples;
    model.weights = head.weights;
    model.halvings = head.halvings;
    Some(model.calibrated())
}

struct HashingWriter<'a, W: Write> {
    inner: W,
    hasher: &'a mut blake3::Hasher,
    len: u64,
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn varint(&mut self) -> Option<u32> {
        let mut value = 0u64;
        for shift in (0..35).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return u32::try_from(value).ok();
            }
        }
        None
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    // Directories cannot be opened for syncing on this platform; the rename
    // is as durable as the platform makes it.
    Ok(())
}
