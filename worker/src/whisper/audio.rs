//! Reading 16 kHz mono WAV files a window at a time: the header is checked once, then
//! samples are read by range, so a long file is never held in memory.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::WhisperError;

/// Whisper's sample rate.
pub const SAMPLE_RATE: u32 = 16_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Pcm16,
    Float32,
}

/// An open WAV file: 16 kHz, mono, 16-bit PCM or 32-bit float.
#[derive(Debug)]
pub struct WavReader {
    file: File,
    path: PathBuf,
    encoding: Encoding,
    data_offset: u64,
    samples: u64,
    /// When set, the reader shows only these parts of the file, joined.
    speech: Option<SpeechMap>,
}

/// Parts of a file (speech) read as one joined recording, and how times on the joined
/// recording map back to the file.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechMap {
    /// `(start, end)` samples of the file, in order, not overlapping.
    regions: Vec<(u64, u64)>,
    /// Where each region starts in the joined recording.
    joined_starts: Vec<u64>,
    total: u64,
}

impl SpeechMap {
    pub fn new(regions: Vec<(u64, u64)>) -> SpeechMap {
        let mut joined_starts = Vec::with_capacity(regions.len());
        let mut total = 0;
        for &(start, end) in &regions {
            joined_starts.push(total);
            total += end.saturating_sub(start);
        }
        SpeechMap {
            regions,
            joined_starts,
            total,
        }
    }

    /// Samples in the joined recording.
    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The file's regions `(start, end)` in samples.
    pub fn regions(&self) -> &[(u64, u64)] {
        &self.regions
    }

    /// The file time of `seconds` on the joined recording. A time where two regions
    /// join is the end of the first when `is_end`, else the start of the second.
    pub fn file_seconds(&self, seconds: f64, is_end: bool) -> f64 {
        let rate = f64::from(SAMPLE_RATE);
        let at = (seconds.max(0.0) * rate).round() as u64;
        let index = if is_end {
            self.joined_starts.partition_point(|&s| s < at)
        } else {
            self.joined_starts.partition_point(|&s| s <= at)
        };
        let Some(i) = index.checked_sub(1) else {
            return self.regions.first().map_or(seconds, |r| r.0 as f64 / rate);
        };
        let (start, end) = self.regions[i];
        let file = (start + (at - self.joined_starts[i])).min(end);
        file as f64 / rate
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> WhisperError {
    WhisperError::Audio {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl WavReader {
    /// Opens `path` and checks its header; anything but 16 kHz mono 16-bit PCM or 32-bit
    /// float is refused with an error naming what is wrong.
    pub fn open(path: &Path) -> Result<WavReader, WhisperError> {
        let mut file = File::open(path).map_err(|source| WhisperError::Io {
            path: path.to_owned(),
            source,
        })?;
        let len = file
            .metadata()
            .map_err(|source| WhisperError::Io {
                path: path.to_owned(),
                source,
            })?
            .len();
        let mut riff = [0u8; 12];
        read_header(&mut file, &mut riff, path)?;
        if &riff[0..4] != b"RIFF" || &riff[8..12] != b"WAVE" {
            return Err(bad(path, "not a WAV file (no RIFF/WAVE header)"));
        }
        let mut pos = 12u64;
        let mut format: Option<(Encoding, u16, u32)> = None;
        loop {
            let mut head = [0u8; 8];
            if pos + 8 > len {
                return Err(bad(
                    path,
                    if format.is_none() {
                        "truncated WAV header: no `fmt ` chunk"
                    } else {
                        "no `data` chunk"
                    },
                ));
            }
            read_header(&mut file, &mut head, path)?;
            let id = [head[0], head[1], head[2], head[3]];
            let size = u64::from(u32_at(&head, 4));
            pos += 8;
            match &id {
                b"fmt " => {
                    if pos + size > len {
                        return Err(bad(path, "truncated WAV header: the `fmt ` chunk is cut short"));
                    }
                    if !(16..=1024).contains(&size) {
                        return Err(bad(path, format!("invalid `fmt ` chunk of {size} bytes")));
                    }
                    let mut fmt = vec![0u8; size as usize];
                    read_header(&mut file, &mut fmt, path)?;
                    let mut tag = u16_at(&fmt, 0);
                    let channels = u16_at(&fmt, 2);
                    let rate = u32_at(&fmt, 4);
                    let bits = u16_at(&fmt, 14);
                    if tag == 0xFFFE && fmt.len() >= 26 {
                        // WAVE_FORMAT_EXTENSIBLE: the sub-format GUID starts with the tag.
                        tag = u16_at(&fmt, 24);
                    }
                    let encoding = match (tag, bits) {
                        (1, 16) => Encoding::Pcm16,
                        (3, 32) => Encoding::Float32,
                        (1, b) => {
                            return Err(bad(
                                path,
                                format!("unsupported WAV: {b}-bit PCM (16-bit PCM or 32-bit float expected)"),
                            ));
                        }
                        (3, b) => return Err(bad(path, format!("unsupported WAV: {b}-bit float (32-bit expected)"))),
                        (t, _) => {
                            return Err(bad(
                                path,
                                format!(
                                    "unsupported WAV encoding (format tag {t:#x}; 16-bit PCM or 32-bit float expected)"
                                ),
                            ));
                        }
                    };
                    format = Some((encoding, channels, rate));
                    pos += size + (size & 1);
                    file.seek(SeekFrom::Start(pos)).map_err(|source| WhisperError::Io {
                        path: path.to_owned(),
                        source,
                    })?;
                }
                b"data" => {
                    let Some((encoding, channels, rate)) = format else {
                        return Err(bad(path, "`data` chunk before the `fmt ` chunk"));
                    };
                    if channels != 1 {
                        return Err(bad(
                            path,
                            format!("unsupported WAV: {channels} channels (mono expected)"),
                        ));
                    }
                    if rate != SAMPLE_RATE {
                        return Err(bad(
                            path,
                            format!("unsupported WAV: {rate} Hz ({SAMPLE_RATE} Hz expected)"),
                        ));
                    }
                    // Streamed writers leave the size at 0 or 0xFFFFFFFF: the data runs to the end.
                    let available = len - pos;
                    let size = if size == 0 || size == 0xFFFF_FFFF || size > available {
                        available
                    } else {
                        size
                    };
                    let width = match encoding {
                        Encoding::Pcm16 => 2,
                        Encoding::Float32 => 4,
                    };
                    let samples = size / width;
                    if samples == 0 {
                        return Err(bad(path, "WAV has no audio samples"));
                    }
                    return Ok(WavReader {
                        file,
                        path: path.to_owned(),
                        encoding,
                        data_offset: pos,
                        samples,
                        speech: None,
                    });
                }
                _ => {
                    pos += size + (size & 1);
                    file.seek(SeekFrom::Start(pos)).map_err(|source| WhisperError::Io {
                        path: path.to_owned(),
                        source,
                    })?;
                }
            }
        }
    }

    /// Number of samples read: the file's, or the joined speech's once
    /// [`WavReader::keep_only`] is set.
    pub fn len(&self) -> u64 {
        self.speech.as_ref().map_or(self.samples, SpeechMap::len)
    }

    /// Whether there is nothing to read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of samples in the file.
    pub fn file_len(&self) -> u64 {
        self.samples
    }

    /// Duration of the file in seconds.
    pub fn duration(&self) -> f64 {
        self.samples as f64 / f64::from(SAMPLE_RATE)
    }

    /// From now on, reads see only `speech`'s regions of the file, joined.
    pub fn keep_only(&mut self, speech: SpeechMap) {
        self.speech = Some(speech);
    }

    /// Samples `[start, start + count)` as floats in [-1, 1] of what is read (the file,
    /// or the joined speech); indices outside it read as zeros (negative ones included).
    pub fn read(&mut self, start: i64, count: usize) -> Result<Vec<f32>, WhisperError> {
        // Taken out for the reads (which borrow the reader), put back after.
        let Some(speech) = self.speech.take() else {
            return self.read_file(start, count);
        };
        let out = self.read_joined(&speech, start, count);
        self.speech = Some(speech);
        out
    }

    fn read_joined(&mut self, speech: &SpeechMap, start: i64, count: usize) -> Result<Vec<f32>, WhisperError> {
        let mut out = vec![0f32; count];
        let end = start.saturating_add(count as i64);
        for (&(file_start, file_end), &joined) in speech.regions.iter().zip(&speech.joined_starts) {
            let joined_end = joined + (file_end - file_start);
            let from = start.max(joined as i64);
            let to = end.min(joined_end as i64);
            if from >= to {
                continue;
            }
            let part = self.read_file(file_start as i64 + (from - joined as i64), (to - from) as usize)?;
            out[(from - start) as usize..(to - start) as usize].copy_from_slice(&part);
        }
        Ok(out)
    }

    /// Samples `[start, start + count)` of the file as floats in [-1, 1]; indices outside
    /// the file read as zeros (negative ones included).
    pub fn read_file(&mut self, start: i64, count: usize) -> Result<Vec<f32>, WhisperError> {
        let mut out = vec![0f32; count];
        let end = start.saturating_add(count as i64);
        let from = start.max(0);
        let to = end.min(self.samples as i64);
        if from >= to {
            return Ok(out);
        }
        let width: u64 = match self.encoding {
            Encoding::Pcm16 => 2,
            Encoding::Float32 => 4,
        };
        let n = (to - from) as usize;
        let mut bytes = vec![0u8; n * width as usize];
        let io = |source| WhisperError::Io {
            path: self.path.clone(),
            source,
        };
        self.file
            .seek(SeekFrom::Start(self.data_offset + from as u64 * width))
            .map_err(io)?;
        self.file.read_exact(&mut bytes).map_err(|source| WhisperError::Io {
            path: self.path.clone(),
            source,
        })?;
        let dst = &mut out[(from - start) as usize..(to - start) as usize];
        match self.encoding {
            Encoding::Pcm16 => {
                for (d, c) in dst.iter_mut().zip(bytes.chunks_exact(2)) {
                    *d = f32::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0;
                }
            }
            Encoding::Float32 => {
                for (d, c) in dst.iter_mut().zip(bytes.chunks_exact(4)) {
                    let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    *d = if v.is_finite() { v } else { 0.0 };
                }
            }
        }
        Ok(out)
    }
}

fn read_header(file: &mut File, buf: &mut [u8], path: &Path) -> Result<(), WhisperError> {
    file.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            bad(path, "truncated WAV header")
        } else {
            WhisperError::Io {
                path: path.to_owned(),
                source: e,
            }
        }
    })
}

/// Writes `samples` as a 16 kHz mono 16-bit PCM WAV (for tests and tools).
pub fn write_wav_pcm16(path: &Path, samples: &[f32]) -> std::io::Result<()> {
    let data_len = u32::try_from(samples.len() * 2).map_err(|_| std::io::Error::other("too long for WAV"))?;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
    out.extend_from_slice(&(SAMPLE_RATE * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        let v = (s.clamp(-1.0, 1.0) * 32767.0).round() as i16;
        out.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, out)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing test should stop right there")]
mod tests {
    use super::*;

    #[test]
    fn reads_ranges_with_zero_padding() {
        let dir = std::env::temp_dir().join(format!("rushes-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.wav");
        let samples: Vec<f32> = (0..100).map(|i| i as f32 / 200.0).collect();
        write_wav_pcm16(&path, &samples).unwrap();
        let mut wav = WavReader::open(&path).unwrap();
        assert_eq!(wav.len(), 100);
        let got = wav.read(-2, 5).unwrap();
        assert_eq!(got[0], 0.0);
        assert_eq!(got[1], 0.0);
        assert!((got[3] - 1.0 / 200.0).abs() < 1e-4);
        let tail = wav.read(98, 4).unwrap();
        assert!((tail[1] - 99.0 / 200.0).abs() < 1e-4);
        assert_eq!(tail[2], 0.0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
