//! Decoding one 30-s window: the prompt, logit filters (suppressed tokens, blank
//! suppression, OpenAI's timestamp rules), beam search, greedy or sampled tokens, and
//! the window's token sequence split into timed segments.

use super::model::Model;
use super::ops::{log_softmax, logsumexp};
use super::tokens::Tokens;

/// Timestamps allowed for the first token: up to 1 s into the window.
const MAX_INITIAL_TIMESTAMP_INDEX: u32 = 50;

/// What a window's decoding produced.
#[derive(Debug, Clone)]
pub struct WindowResult {
    /// Sampled tokens, without the final `<|endoftext|>`.
    pub tokens: Vec<u32>,
    pub avg_logprob: f32,
    pub no_speech_prob: f32,
    pub temperature: f32,
    pub compression_ratio: f32,
    pub text: String,
}

/// Static pieces of every window's decoding.
#[derive(Debug, Clone)]
pub struct DecodeSetup {
    /// Prompt after `<|startofprev|>` (already limited to the context), may be empty.
    pub prompt: Vec<u32>,
    /// `<|startoftranscript|>` [language, task].
    pub sot_sequence: Vec<u32>,
    pub suppress: Vec<u32>,
    pub suppress_begin: Vec<u32>,
    pub sample_len: usize,
    /// Beam search at temperature 0 (a size of 1 is greedy decoding).
    pub beam: Beam,
}

/// Beam search as OpenAI's and faster-whisper's: `size` beams; the search ends once
/// `round(size × patience)` sequences have finished; finished sequences are ranked by
/// their log-probability over a length penalty (`None`: the length itself, else
/// Google NMT's `((5 + length) / 6) ^ penalty`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Beam {
    pub size: usize,
    pub patience: f32,
    pub length_penalty: Option<f32>,
}

impl Beam {
    fn score(&self, sum_logprob: f32, length: usize) -> f32 {
        let length = length as f32;
        let penalty = match self.length_penalty {
            None => length,
            Some(p) => ((5.0 + length) / 6.0).powf(p),
        };
        if penalty > 0.0 {
            sum_logprob / penalty
        } else {
            sum_logprob
        }
    }
}

/// The ids the timestamp rules need.
#[derive(Debug, Clone, Copy)]
pub struct TimestampIds {
    pub eot: u32,
    pub no_timestamps: u32,
    pub timestamp_begin: u32,
}

impl From<&Tokens> for TimestampIds {
    fn from(t: &Tokens) -> Self {
        TimestampIds {
            eot: t.eot,
            no_timestamps: t.no_timestamps,
            timestamp_begin: t.timestamp_begin,
        }
    }
}

/// Applies OpenAI's `ApplyTimestampRules` to `logits` given the tokens sampled so far.
pub fn apply_timestamp_rules(logits: &mut [f32], sampled: &[u32], tokens: TimestampIds) {
    let ts = tokens.timestamp_begin as usize;
    let eot = tokens.eot as usize;
    logits[tokens.no_timestamps as usize] = f32::NEG_INFINITY;
    let n = sampled.len();
    let last_was_ts = n >= 1 && sampled[n - 1] >= tokens.timestamp_begin;
    let penultimate_was_ts = n < 2 || sampled[n - 2] >= tokens.timestamp_begin;
    if last_was_ts {
        if penultimate_was_ts {
            // Two timestamps in a row close a segment: text must follow.
            logits[ts..].fill(f32::NEG_INFINITY);
        } else {
            // After text, a timestamp or the end.
            logits[..eot].fill(f32::NEG_INFINITY);
        }
    }
    if let Some(&last_ts) = sampled.iter().rev().find(|&&t| t >= tokens.timestamp_begin) {
        // Timestamps never decrease, and a segment has a non-zero length.
        let floor = if last_was_ts && !penultimate_was_ts {
            last_ts
        } else {
            last_ts + 1
        };
        let end = (floor as usize).min(logits.len());
        logits[ts..end].fill(f32::NEG_INFINITY);
    }
    if n == 0 {
        // The window starts with a timestamp, at most 1 s in.
        logits[..ts].fill(f32::NEG_INFINITY);
        let last_allowed = ts + MAX_INITIAL_TIMESTAMP_INDEX as usize;
        if last_allowed + 1 < logits.len() {
            logits[last_allowed + 1..].fill(f32::NEG_INFINITY);
        }
    }
    // When timestamps together are likelier than any text token, sample a timestamp
    // (compared on logits: the log-softmax normaliser is common to both sides).
    let ts_mass = logsumexp(&logits[ts..]);
    let max_text = logits[..ts].iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if ts_mass > max_text {
        logits[..ts].fill(f32::NEG_INFINITY);
    }
}

/// A tiny deterministic generator for sampling at temperature > 0.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}

fn sample(logits: &[f32], temperature: f32, rng: &mut Rng) -> u32 {
    let scaled: Vec<f32> = logits.iter().map(|&l| l / temperature).collect();
    let max = scaled.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f32> = scaled.iter().map(|&l| (l - max).exp()).collect();
    let total: f32 = weights.iter().sum();
    let mut r = rng.next_f32() * total;
    for (i, &w) in weights.iter().enumerate() {
        if r < w {
            return i as u32;
        }
        r -= w;
    }
    argmax(logits)
}

/// Text bytes over their zlib-compressed size: repetitive text compresses well.
pub fn compression_ratio(text: &str) -> f32 {
    use std::io::Write as _;
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return 0.0;
    }
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    if enc.write_all(bytes).is_err() {
        return 0.0;
    }
    match enc.finish() {
        Ok(z) if !z.is_empty() => bytes.len() as f32 / z.len() as f32,
        _ => 0.0,
    }
}

/// Masks what may not come next after `sampled`: suppressed tokens, a blank start,
/// and the timestamp rules.
fn filter(logits: &mut [f32], sampled: &[u32], setup: &DecodeSetup, ids: TimestampIds) {
    let begin: &[u32] = if sampled.is_empty() { &setup.suppress_begin } else { &[] };
    for &id in setup.suppress.iter().chain(begin) {
        if let Some(logit) = logits.get_mut(id as usize) {
            *logit = f32::NEG_INFINITY;
        }
    }
    apply_timestamp_rules(logits, sampled, ids);
}

/// Decodes the current window (audio already set on `model`) at `temperature`: beam
/// search at 0 when `setup.beam` asks for several beams, else one greedy or sampled
/// sequence.
pub fn decode_window(
    model: &mut Model,
    tokens: &Tokens,
    setup: &DecodeSetup,
    temperature: f32,
    rng: &mut Rng,
) -> candle_core::Result<WindowResult> {
    model.reset();
    let mut prefix: Vec<u32> = Vec::new();
    if !setup.prompt.is_empty() {
        prefix.push(tokens.sot_prev);
        prefix.extend_from_slice(&setup.prompt);
    }
    let sot_index = prefix.len();
    prefix.extend_from_slice(&setup.sot_sequence);
    let mut rows = model.decode(&prefix, &[sot_index, prefix.len() - 1])?;
    let no_speech_prob = match tokens.no_speech {
        Some(ns) => log_softmax(&rows[0])[ns as usize].exp(),
        None => 0.0,
    };
    let logits = rows.swap_remove(1);
    let room = model.dims.n_text_ctx.saturating_sub(prefix.len());
    let max_len = setup.sample_len.min(room);
    let (sampled, sum_logprob) = if temperature <= 0.0 && setup.beam.size > 1 {
        beam_search(model, tokens, setup, logits, max_len)?
    } else {
        sample_one(model, tokens, setup, logits, temperature, rng, max_len)?
    };
    let text = tokens.decode(&sampled).unwrap_or_default();
    Ok(WindowResult {
        avg_logprob: sum_logprob / (sampled.len() + 1) as f32,
        no_speech_prob,
        temperature,
        compression_ratio: compression_ratio(&text),
        text,
        tokens: sampled,
    })
}

/// One sequence, the likeliest token each step (temperature 0) or sampled; returns it
/// and its summed log-probability (the end of text included).
fn sample_one(
    model: &mut Model,
    tokens: &Tokens,
    setup: &DecodeSetup,
    mut logits: Vec<f32>,
    temperature: f32,
    rng: &mut Rng,
    max_len: usize,
) -> candle_core::Result<(Vec<u32>, f32)> {
    let mut sampled: Vec<u32> = Vec::new();
    let mut sum_logprob = 0f32;
    loop {
        filter(&mut logits, &sampled, setup, tokens.into());
        let next = if temperature > 0.0 {
            sample(&logits, temperature, rng)
        } else {
            argmax(&logits)
        };
        let lp = logits[next as usize] - logsumexp(&logits);
        if lp.is_finite() {
            sum_logprob += lp;
        }
        if next == tokens.eot || sampled.len() + 1 >= max_len {
            if next != tokens.eot {
                sampled.push(next);
            }
            break;
        }
        sampled.push(next);
        logits = model.decode(&[next], &[0])?.swap_remove(0);
    }
    Ok((sampled, sum_logprob))
}

/// The `k` largest finite values of `x` as `(index, value)`, largest first.
fn top_k(x: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (i, &v) in x.iter().enumerate() {
        if !v.is_finite() || (best.len() == k && v <= best[k - 1].1) {
            continue;
        }
        let at = best.partition_point(|&(_, b)| b >= v);
        best.insert(at, (i as u32, v));
        best.truncate(k);
    }
    best
}

/// Beam search (OpenAI's `BeamSearchDecoder` with its `MaximumLikelihoodRanker`):
/// each step every live beam offers its `size + 1` likeliest continuations; the best
/// `size` that do not end the text live on, the ending ones finish (up to
/// `round(size × patience)`). The beams run as one batch through the decoder, their
/// caches reordered after each step.
fn beam_search(
    model: &mut Model,
    tokens: &Tokens,
    setup: &DecodeSetup,
    first: Vec<f32>,
    max_len: usize,
) -> candle_core::Result<(Vec<u32>, f32)> {
    let size = setup.beam.size;
    let max_candidates = ((size as f32 * setup.beam.patience).round() as usize).max(1);
    let ids: TimestampIds = tokens.into();
    // Live beams (sequence, summed log-probability); the model's batch holds `size`
    // rows once forked, the rows past `beams.len()` repeat the first and are ignored.
    let mut beams: Vec<(Vec<u32>, f32)> = vec![(Vec::new(), 0.0)];
    let mut rows: Vec<Vec<f32>> = vec![first];
    let mut finished: Vec<(Vec<u32>, f32)> = Vec::new();
    for step in 0..max_len.max(1) {
        let mut candidates: Vec<(f32, usize, u32)> = Vec::with_capacity(beams.len() * (size + 1));
        for (source, ((sequence, sum), row)) in beams.iter().zip(rows.iter_mut()).enumerate() {
            filter(row, sequence, setup, ids);
            let norm = logsumexp(row);
            for (token, logit) in top_k(row, size + 1) {
                candidates.push((sum + (logit - norm), source, token));
            }
        }
        // Best first; ties keep the earlier beam and token, as a stable sort of
        // OpenAI's insertion-ordered candidates does.
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut next: Vec<(Vec<u32>, f32)> = Vec::with_capacity(size);
        let mut sources: Vec<usize> = Vec::with_capacity(size);
        let mut fed: Vec<u32> = Vec::with_capacity(size);
        for (score, source, token) in candidates {
            if token == tokens.eot {
                if finished.len() < max_candidates {
                    finished.push((beams[source].0.clone(), score));
                }
                continue;
            }
            let mut sequence = beams[source].0.clone();
            sequence.push(token);
            next.push((sequence, score));
            sources.push(source);
            fed.push(token);
            if next.len() == size {
                break;
            }
        }
        let out_of_room = step + 1 >= max_len;
        beams = next;
        if finished.len() >= max_candidates || beams.is_empty() || out_of_room {
            break;
        }
        while sources.len() < size {
            sources.push(sources[0]);
            fed.push(fed[0]);
        }
        if model.beam_count() == 1 {
            // Every beam so far continues the one prompt: copy its cache.
            model.fork(size)?;
        } else {
            model.reorder(&sources)?;
        }
        rows = model.decode_beams(&fed)?;
        rows.truncate(beams.len());
    }
    // Too few finished: the live beams count as finished (without the end of text).
    if finished.len() < size {
        beams.sort_by(|a, b| b.1.total_cmp(&a.1));
        for beam in beams {
            if finished.len() >= size {
                break;
            }
            finished.push(beam);
        }
    }
    let best = finished
        .into_iter()
        .map(|(sequence, sum)| {
            let score = setup.beam.score(sum, sequence.len());
            (sequence, sum, score)
        })
        .fold(None::<(Vec<u32>, f32, f32)>, |best, c| match best {
            Some(b) if b.2 >= c.2 => Some(b),
            _ => Some(c),
        });
    Ok(best.map(|(sequence, sum, _)| (sequence, sum)).unwrap_or_default())
}

/// One timed piece of a window: token ids and times relative to the window start.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub start: f64,
    pub end: f64,
    pub tokens: Vec<u32>,
}

/// Splits a window's tokens at timestamp pairs (OpenAI's rule) and says how far to
/// advance, in frames: to the last complete segment's end, or the whole window when
/// the tokens end on a single timestamp or hold no closed segment.
pub fn split_segments(tokens: &[u32], ts_begin: u32, segment_frames: usize) -> (Vec<Piece>, usize) {
    let is_ts = |t: u32| t >= ts_begin;
    let time = |t: u32| f64::from(t - ts_begin) * super::tokens::TIME_PRECISION;
    let n = tokens.len();
    let single_ending = n >= 2 && !is_ts(tokens[n - 2]) && is_ts(tokens[n - 1]);
    let mut cuts: Vec<usize> = (1..n).filter(|&i| is_ts(tokens[i - 1]) && is_ts(tokens[i])).collect();
    let mut pieces = Vec::new();
    if !cuts.is_empty() {
        if single_ending {
            cuts.push(n);
        }
        let mut last = 0;
        for &cut in &cuts {
            let slice = &tokens[last..cut];
            if slice.len() >= 2 && is_ts(slice[0]) && is_ts(slice[slice.len() - 1]) {
                pieces.push(Piece {
                    start: time(slice[0]),
                    end: time(slice[slice.len() - 1]),
                    tokens: slice.to_vec(),
                });
            }
            last = cut;
        }
        let advance = if single_ending {
            segment_frames
        } else {
            // The last complete segment ends with the timestamp before `last`.
            let pos = (tokens[last - 1] - ts_begin) as usize;
            pos * 2
        };
        (pieces, advance.clamp(1, segment_frames.max(1)))
    } else {
        let mut duration = segment_frames as f64 * 0.01;
        let stamps: Vec<u32> = tokens.iter().copied().filter(|&t| is_ts(t)).collect();
        if let Some(&last) = stamps.last()
            && last != ts_begin
        {
            duration = time(last);
        }
        let start = stamps.first().map_or(0.0, |&t| time(t));
        pieces.push(Piece {
            start: start.min(duration),
            end: duration,
            tokens: tokens.to_vec(),
        });
        (pieces, segment_frames.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_split_at_timestamp_pairs() {
        let ts = 1000;
        // <0.00> a b <1.00><1.00> c <2.00> (single ending)
        let toks = [ts, 1, 2, ts + 50, ts + 50, 3, ts + 100];
        let (pieces, advance) = split_segments(&toks, ts, 3000);
        assert_eq!(pieces.len(), 2);
        assert_eq!((pieces[0].start, pieces[0].end), (0.0, 1.0));
        assert_eq!((pieces[1].start, pieces[1].end), (1.0, 2.0));
        assert_eq!(advance, 3000);

        // <0.00> a <1.00><1.00> b (unfinished): seek to 1.00 s = 100 frames
        let toks = [ts, 1, ts + 50, ts + 50, 2];
        let (pieces, advance) = split_segments(&toks, ts, 3000);
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].tokens, vec![ts, 1, ts + 50]);
        assert_eq!(advance, 100);

        // No pair: one piece for the window, up to the last timestamp.
        let toks = [ts, 1, 2, ts + 150];
        let (pieces, advance) = split_segments(&toks, ts, 2000);
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].end, 3.0);
        assert_eq!(advance, 2000);
    }

    #[test]
    fn compression_ratio_flags_repetition() {
        let plain = "He was not an ill disposed young man, unless to be rather cold hearted.";
        let looped = "thank you ".repeat(30);
        assert!(compression_ratio(plain) < 1.5, "{}", compression_ratio(plain));
        assert!(compression_ratio(&looped) > 2.4, "{}", compression_ratio(&looped));
    }

    const IDS: TimestampIds = TimestampIds {
        eot: 10,
        no_timestamps: 14,
        timestamp_begin: 15,
    };

    fn allowed(logits: &[f32]) -> Vec<usize> {
        (0..logits.len()).filter(|&i| logits[i].is_finite()).collect()
    }

    #[test]
    fn timestamp_rules() {
        // 15 text/special ids, timestamps 15..=114 (0.00 .. 1.98 s).
        let flat = vec![0f32; 115];

        // First token: a timestamp of at most 1 s (index 50).
        let mut l = flat.clone();
        apply_timestamp_rules(&mut l, &[], IDS);
        assert_eq!(allowed(&l), (15..=65).collect::<Vec<_>>());

        // Text after a timestamp, closed by a timestamp: the segment ends (a timestamp
        // not earlier than the last one, or the end of text); no more text.
        let mut l = flat.clone();
        l[3] = 5.0;
        apply_timestamp_rules(&mut l, &[20, 3, 25], IDS);
        let a = allowed(&l);
        assert!(!a.contains(&3), "text is masked: {a:?}");
        assert!(
            a.iter().filter(|&&i| i >= 15).all(|&i| i >= 25),
            "no timestamp before the last: {a:?}"
        );

        // After text, timestamps must move forward.
        let mut l = flat.clone();
        l[3] = 5.0;
        apply_timestamp_rules(&mut l, &[20, 3], IDS);
        let a = allowed(&l);
        assert!(a.contains(&3));
        assert!(a.iter().filter(|&&i| i >= 15).all(|&i| i >= 21), "{a:?}");

        // Two timestamps in a row: text must follow.
        let mut l = flat.clone();
        l[2] = 10.0;
        apply_timestamp_rules(&mut l, &[20, 3, 25, 25], IDS);
        assert!(allowed(&l).iter().all(|&i| i < 15));
        assert!(!l[14].is_finite(), "<|notimestamps|> is never sampled");

        // When timestamps together outweigh every text token, text is masked.
        let mut l = flat.clone();
        l[30] = 3.0;
        l[31] = 3.0;
        apply_timestamp_rules(&mut l, &[20, 3, 4], IDS);
        assert!(allowed(&l).iter().all(|&i| i >= 21), "{:?}", allowed(&l));
    }
}
