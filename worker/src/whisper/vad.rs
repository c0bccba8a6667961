//! Voice activity: where a recording holds speech, so that Whisper decodes only that
//! (a take that is mostly room tone costs little, and no text is invented in it).
//! Scores come from `earshot` (a small neural detector, 16-ms frames); they are turned
//! into speech regions as faster-whisper does with Silero's scores (`get_speech_timestamps`):
//! speech starts at a frame above the threshold, ends after enough frames below a lower
//! one, short bits are dropped, and each region is padded.

use super::WhisperError;
use super::audio::{SAMPLE_RATE, WavReader};

/// Samples per detector frame (16 ms at 16 kHz).
const FRAME: usize = 256;
/// Frames read from the file at a time.
const FRAMES_PER_READ: usize = 1024;
/// Frames the detector hears before it scores (0.5 s): from its zeroed state, the start
/// of any sound — broadband noise, room tone — looks like the onset of speech.
const PRIMING_FRAMES: usize = 32;

/// How speech is told from silence; the defaults are faster-whisper's, but for the
/// shortest speech kept: 250 ms (Silero's own default) rather than none, since a
/// 16-ms detector's lone frames over the threshold in noise are not speech.
#[derive(Debug, Clone, PartialEq)]
pub struct VadOptions {
    /// A frame scoring at least this is speech.
    pub threshold: f32,
    /// Speech goes on until frames score below this (`None`: `threshold − 0.15`).
    pub neg_threshold: Option<f32>,
    /// Shorter speech is dropped.
    pub min_speech_ms: u32,
    /// Silence shorter than this does not end speech.
    pub min_silence_ms: u32,
    /// Audio kept on each side of speech.
    pub speech_pad_ms: u32,
}

impl Default for VadOptions {
    fn default() -> Self {
        VadOptions {
            threshold: 0.5,
            neg_threshold: None,
            min_speech_ms: 250,
            min_silence_ms: 2000,
            speech_pad_ms: 400,
        }
    }
}

fn samples_of(ms: u32) -> u64 {
    u64::from(SAMPLE_RATE) * u64::from(ms) / 1000
}

/// Speech scores of each 16-ms frame of `wav` (read as the file is, whatever map is set).
fn scores(wav: &mut WavReader) -> Result<Vec<f32>, WhisperError> {
    let mut detector = earshot::Detector::default_boxed();
    let total = wav.file_len();
    let mut out = Vec::with_capacity((total as usize).div_ceil(FRAME));
    let mut frame = [0i16; FRAME];
    let to_frame = |chunk: &[f32], frame: &mut [i16; FRAME]| {
        // The last frame is padded with silence.
        frame.fill(0);
        for (f, s) in frame.iter_mut().zip(chunk) {
            *f = (s.clamp(-1.0, 1.0) * 32767.0) as i16;
        }
    };
    let priming = (total as usize).min(FRAME * PRIMING_FRAMES);
    for chunk in wav.read_file(0, priming)?.chunks(FRAME) {
        to_frame(chunk, &mut frame);
        detector.predict_i16(&frame);
    }
    let mut start = 0u64;
    while start < total {
        let block = wav.read_file(start as i64, FRAME * FRAMES_PER_READ)?;
        let available = (total - start).min(block.len() as u64) as usize;
        for chunk in block[..available].chunks(FRAME) {
            to_frame(chunk, &mut frame);
            out.push(detector.predict_i16(&frame));
        }
        start += available as u64;
    }
    Ok(out)
}

/// The speech regions `[start, end)` of `wav`, in samples of the file, in order and
/// not overlapping.
pub fn speech_regions(wav: &mut WavReader, opts: &VadOptions) -> Result<Vec<(u64, u64)>, WhisperError> {
    let scores = scores(wav)?;
    Ok(regions(&scores, wav.file_len(), opts))
}

/// Speech regions from frame scores (`len`: samples in the audio).
pub fn regions(scores: &[f32], len: u64, opts: &VadOptions) -> Vec<(u64, u64)> {
    let threshold = opts.threshold;
    let neg_threshold = opts.neg_threshold.unwrap_or((threshold - 0.15).max(0.01));
    let min_silence = samples_of(opts.min_silence_ms);
    let min_speech = samples_of(opts.min_speech_ms);
    let pad = samples_of(opts.speech_pad_ms);
    let mut speeches: Vec<(u64, u64)> = Vec::new();
    let mut start: Option<u64> = None;
    let mut silence_from: Option<u64> = None;
    for (i, &p) in scores.iter().enumerate() {
        let at = (i * FRAME) as u64;
        if p >= threshold {
            silence_from = None;
            if start.is_none() {
                start = Some(at);
            }
            continue;
        }
        let Some(begun) = start else { continue };
        if p < neg_threshold {
            let quiet = *silence_from.get_or_insert(at);
            if at - quiet >= min_silence {
                if quiet - begun > min_speech {
                    speeches.push((begun, quiet));
                }
                start = None;
                silence_from = None;
            }
        }
    }
    if let Some(begun) = start
        && len.saturating_sub(begun) > min_speech
    {
        speeches.push((begun, len));
    }
    // Pad each region; two regions closer than two pads share the gap between them.
    let n = speeches.len();
    for i in 0..n {
        if i == 0 {
            speeches[0].0 = speeches[0].0.saturating_sub(pad);
        }
        if i + 1 < n {
            let gap = speeches[i + 1].0.saturating_sub(speeches[i].1);
            if gap < 2 * pad {
                speeches[i].1 += gap / 2;
                speeches[i + 1].0 -= gap / 2;
            } else {
                speeches[i].1 = (speeches[i].1 + pad).min(len);
                speeches[i + 1].0 = speeches[i + 1].0.saturating_sub(pad);
            }
        } else {
            speeches[i].1 = (speeches[i].1 + pad).min(len);
        }
    }
    speeches.retain(|(s, e)| e > s);
    speeches
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames of 16 ms: `on` frames scored 0.9 between `off` frames scored 0.
    fn scored(pattern: &[(usize, bool)]) -> Vec<f32> {
        pattern
            .iter()
            .flat_map(|&(n, on)| std::iter::repeat_n(if on { 0.9 } else { 0.0 }, n))
            .collect()
    }

    #[test]
    fn speech_is_found_padded_and_short_gaps_do_not_split_it() {
        let opts = VadOptions::default();
        // 1 s silence, 1 s speech, 0.5 s silence, 1 s speech, 4 s silence, 0.5 s speech.
        let frames = |s: f64| (s * 1000.0 / 16.0).round() as usize;
        let scores = scored(&[
            (frames(1.0), false),
            (frames(1.0), true),
            (frames(0.5), false),
            (frames(1.0), true),
            (frames(4.0), false),
            (frames(0.5), true),
        ]);
        let len = (scores.len() * FRAME) as u64;
        let found = regions(&scores, len, &opts);
        assert_eq!(found.len(), 2, "{found:?}");
        let sec = |s: u64| s as f64 / 16000.0;
        // The first region: from 1 s less the pad to 3.5 s plus the pad.
        assert!((sec(found[0].0) - 0.6).abs() < 0.02, "{found:?}");
        assert!((sec(found[0].1) - 3.9).abs() < 0.03, "{found:?}");
        assert!((sec(found[1].0) - 7.1).abs() < 0.03, "{found:?}");
        assert_eq!(found[1].1, len);
        assert!(regions(&scored(&[(500, false)]), 500 * 256, &opts).is_empty());
    }
}
