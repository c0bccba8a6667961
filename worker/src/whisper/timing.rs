//! Word-level timestamps, as OpenAI's `timing.py`: the window's text is decoded once
//! more, the cross-attention of the model's alignment heads (which look at the frame a
//! token is spoken in) gives a token × frame matrix, and dynamic time warping through
//! it gives each token's first frame; words are tokens grouped at spaces (or at whole
//! characters for languages written without spaces).

use super::model::Model;
use super::tokens::Tokens;

/// Audio positions per second at the encoder's output.
const TOKENS_PER_SECOND: f64 = 50.0;
/// Width of the median filter over frames.
const MEDIAN_FILTER_WIDTH: usize = 7;
/// Punctuation joined to the word after it, or to the word before it.
const PREPEND_PUNCTUATIONS: &str = "\"'“¿([{-";
const APPEND_PUNCTUATIONS: &str = "\"'.。,，!！?？:：”)]}、";
/// Python's `string.punctuation`.
const PUNCTUATION: &str = r##"!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~"##;
const SENTENCE_END_MARKS: &str = ".。!！?？";
/// Languages written without spaces between words.
const UNSPACED_LANGUAGES: [&str; 6] = ["zh", "ja", "th", "lo", "my", "yue"];

/// A word and when it is spoken, in seconds from the start of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub start: f64,
    pub end: f64,
    /// As the model wrote it, with its leading space.
    pub text: String,
}

/// A word of one window, times from the window's start.
#[derive(Debug, Clone, PartialEq)]
pub struct WordTiming {
    pub text: String,
    /// Tokens of the word (0 once merged into a neighbour: then `text` is empty).
    pub tokens: usize,
    pub start: f64,
    pub end: f64,
}

/// A window's words and the duration statistics the boundary fixes use.
#[derive(Debug, Clone, Default)]
pub struct Alignment {
    pub words: Vec<WordTiming>,
    /// Median word duration, at most 0.7 s.
    pub median: f64,
}

impl Alignment {
    fn max_duration(&self) -> f64 {
        self.median * 2.0
    }
}

/// Aligns `text_tokens` (text tokens of the window, timestamps removed) with the
/// window's audio (set on `model`), `frames` mel frames long. `heads`: the model's
/// alignment heads `(layer, head)`.
pub fn align(
    model: &mut Model,
    tokens: &Tokens,
    sot_sequence: &[u32],
    text_tokens: &[u32],
    frames: usize,
    heads: &[(usize, usize)],
    language: &str,
) -> candle_core::Result<Alignment> {
    if text_tokens.is_empty() || heads.is_empty() {
        return Ok(Alignment::default());
    }
    let mut sequence = sot_sequence.to_vec();
    sequence.push(tokens.no_timestamps);
    sequence.extend_from_slice(text_tokens);
    sequence.push(tokens.eot);
    let scores = model.alignment_scores(&sequence, heads)?;
    let positions = (frames / 2).max(1);
    let rows = text_tokens.len() + 1;
    let mut matrix = vec![0f32; rows * positions];
    for head in &scores {
        let weights = normalised(head, positions);
        // The rows that predict each text token and the end of text.
        for (r, row) in weights[sot_sequence.len()..sot_sequence.len() + rows]
            .iter()
            .enumerate()
        {
            for (m, &w) in matrix[r * positions..(r + 1) * positions].iter_mut().zip(row) {
                *m += w / scores.len() as f32;
            }
        }
    }
    let negated: Vec<f32> = matrix.iter().map(|v| -v).collect();
    let (text_indices, time_indices) = dtw(&negated, rows, positions);

    let mut with_end = text_tokens.to_vec();
    with_end.push(tokens.eot);
    let words = split_words(tokens, &with_end, UNSPACED_LANGUAGES.contains(&language));
    if words.len() <= 1 {
        return Ok(Alignment::default());
    }
    // The time each token first holds the path.
    let mut jump_times = Vec::with_capacity(rows);
    for (k, &i) in text_indices.iter().enumerate() {
        if k == 0 || text_indices[k - 1] != i {
            jump_times.push(time_indices[k] as f64 / TOKENS_PER_SECOND);
        }
    }
    let mut boundary = 0usize;
    let mut timings = Vec::with_capacity(words.len() - 1);
    for (text, ids) in &words[..words.len() - 1] {
        let start = jump_times.get(boundary).copied().unwrap_or_default();
        boundary += ids.len();
        let end = jump_times.get(boundary).copied().unwrap_or(start);
        timings.push(WordTiming {
            text: text.clone(),
            tokens: ids.len(),
            start,
            end: end.max(start),
        });
    }
    let mut durations: Vec<f64> = timings.iter().map(|w| w.end - w.start).filter(|d| *d > 0.0).collect();
    durations.sort_by(f64::total_cmp);
    let median = if durations.is_empty() {
        0.0
    } else if durations.len() % 2 == 1 {
        durations[durations.len() / 2]
    } else {
        (durations[durations.len() / 2 - 1] + durations[durations.len() / 2]) / 2.0
    };
    let mut alignment = Alignment {
        words: timings,
        median: median.min(0.7),
    };
    // A long word at a sentence boundary took the pause with it: cut it.
    if !durations.is_empty() {
        let max = alignment.max_duration();
        for i in 1..alignment.words.len() {
            let (before, after) = alignment.words.split_at_mut(i);
            let word = &mut after[0];
            if word.end - word.start > max {
                if is_one_of(&word.text, SENTENCE_END_MARKS) {
                    word.end = word.start + max;
                } else if is_one_of(&before[i - 1].text, SENTENCE_END_MARKS) {
                    word.start = word.end - max;
                }
            }
        }
    }
    merge_punctuations(&mut alignment.words);
    Ok(alignment)
}

/// Whether `word` is one of the characters of `set`.
fn is_one_of(word: &str, set: &str) -> bool {
    let mut chars = word.chars();
    matches!((chars.next(), chars.next()), (Some(c), None) if set.contains(c))
}

/// Softmax over the first `positions` frames of each token's scores, then each frame
/// standardised over the tokens, then a median filter along the frames.
fn normalised(head: &[Vec<f32>], positions: usize) -> Vec<Vec<f32>> {
    let mut weights: Vec<Vec<f32>> = head
        .iter()
        .map(|row| {
            let row = &row[..positions.min(row.len())];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exp: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
            let sum: f32 = exp.iter().sum();
            exp.into_iter().map(|e| e / sum).collect()
        })
        .collect();
    let tokens = weights.len() as f32;
    let width = weights.first().map_or(0, Vec::len);
    for f in 0..width {
        let mean = weights.iter().map(|r| r[f]).sum::<f32>() / tokens;
        let var = weights.iter().map(|r| (r[f] - mean).powi(2)).sum::<f32>() / tokens;
        let std = var.sqrt().max(f32::MIN_POSITIVE);
        for row in &mut weights {
            row[f] = (row[f] - mean) / std;
        }
    }
    weights
        .iter()
        .map(|row| median_filter(row, MEDIAN_FILTER_WIDTH))
        .collect()
}

/// Median of each `width` values around each one, the edges mirrored (PyTorch's
/// `reflect` padding); a row no longer than half the width is left as it is.
fn median_filter(row: &[f32], width: usize) -> Vec<f32> {
    let pad = width / 2;
    let n = row.len();
    if n <= pad {
        return row.to_vec();
    }
    let at = |i: isize| -> f32 {
        let n = n as isize;
        let j = if i < 0 {
            -i
        } else if i >= n {
            2 * (n - 1) - i
        } else {
            i
        };
        row[j.clamp(0, n - 1) as usize]
    };
    let mut window = vec![0f32; width];
    (0..n)
        .map(|i| {
            for (k, w) in window.iter_mut().enumerate() {
                *w = at(i as isize + k as isize - pad as isize);
            }
            window.sort_by(f32::total_cmp);
            window[pad]
        })
        .collect()
}

/// The cheapest monotonic path through `cost` (`rows` × `cols`, row-major) from the
/// top-left to the bottom-right: `(row, column)` of each step, in order.
pub fn dtw(cost: &[f32], rows: usize, cols: usize) -> (Vec<usize>, Vec<usize>) {
    let w = cols + 1;
    let mut total = vec![f32::INFINITY; (rows + 1) * w];
    let mut trace = vec![0u8; (rows + 1) * w];
    total[0] = 0.0;
    for j in 1..=cols {
        for i in 1..=rows {
            let diagonal = total[(i - 1) * w + j - 1];
            let up = total[(i - 1) * w + j];
            let left = total[i * w + j - 1];
            let (best, step) = if diagonal < up && diagonal < left {
                (diagonal, 0)
            } else if up < diagonal && up < left {
                (up, 1)
            } else {
                (left, 2)
            };
            total[i * w + j] = cost[(i - 1) * cols + j - 1] + best;
            trace[i * w + j] = step;
        }
    }
    trace[..w].fill(2);
    for row in trace.chunks_mut(w) {
        row[0] = 1;
    }
    let (mut i, mut j) = (rows, cols);
    let (mut text, mut time) = (Vec::new(), Vec::new());
    while i > 0 || j > 0 {
        text.push(i.saturating_sub(1));
        time.push(j.saturating_sub(1));
        match trace[i * w + j] {
            0 => {
                i -= 1;
                j -= 1;
            }
            1 => i -= 1,
            _ => j -= 1,
        }
    }
    text.reverse();
    time.reverse();
    (text, time)
}

/// Tokens grouped into words: at whole characters, then (unless `unspaced`) joined
/// until a piece starts with a space, is punctuation, or is special.
fn split_words(tokens: &Tokens, ids: &[u32], unspaced: bool) -> Vec<(String, Vec<u32>)> {
    let mut pieces: Vec<(String, Vec<u32>)> = Vec::new();
    let mut current: Vec<u32> = Vec::new();
    for &id in ids {
        if id >= tokens.eot {
            if !current.is_empty() {
                pieces.push((
                    tokens.decode(&current).unwrap_or_default(),
                    std::mem::take(&mut current),
                ));
            }
            pieces.push((String::new(), vec![id]));
            continue;
        }
        current.push(id);
        let text = tokens.decode(&current).unwrap_or_default();
        if !text.contains('\u{FFFD}') {
            pieces.push((text, std::mem::take(&mut current)));
        }
    }
    if !current.is_empty() {
        pieces.push((tokens.decode(&current).unwrap_or_default(), current));
    }
    if unspaced {
        return pieces;
    }
    let mut words: Vec<(String, Vec<u32>)> = Vec::new();
    for (text, ids) in pieces {
        let special = ids.first().is_some_and(|&id| id >= tokens.eot);
        let starts_word = special || text.starts_with(' ') || PUNCTUATION.contains(text.trim());
        match words.last_mut() {
            Some((word, word_ids)) if !starts_word => {
                word.push_str(&text);
                word_ids.extend(ids);
            }
            _ => words.push((text, ids)),
        }
    }
    words
}

/// Punctuation that opens (a quote, a bracket) joins the next word; punctuation that
/// closes joins the previous one. The emptied entry keeps its place with no tokens.
fn merge_punctuations(words: &mut [WordTiming]) {
    let n = words.len();
    if n < 2 {
        return;
    }
    let mut j = n - 1;
    for i in (0..n - 1).rev() {
        let previous = &words[i];
        if previous.text.starts_with(' ') && PREPEND_PUNCTUATIONS.contains(previous.text.trim()) {
            let (text, count) = (std::mem::take(&mut words[i].text), std::mem::take(&mut words[i].tokens));
            let following = &mut words[j];
            following.text = text + &following.text;
            following.tokens += count;
        } else {
            j = i;
        }
    }
    let mut i = 0;
    for j in 1..n {
        if !words[i].text.ends_with(' ') && APPEND_PUNCTUATIONS.contains(words[j].text.as_str()) {
            let (text, count) = (std::mem::take(&mut words[j].text), std::mem::take(&mut words[j].tokens));
            words[i].text.push_str(&text);
            words[i].tokens += count;
        } else {
            i = j;
        }
    }
}

/// Hands a window's words to its segments in order, by their token counts, and fits
/// each segment's bounds to its words (OpenAI's `add_word_timestamps`): `segments`
/// holds, per segment, its number of text tokens and its `(start, end)` in the file;
/// `offset` is the window's start in the file. Returns each segment's words, and
/// updates the bounds and `last_speech` (the end of the previous speech).
pub fn place(
    alignment: &Alignment,
    segments: &mut [(usize, f64, f64)],
    offset: f64,
    last_speech: &mut f64,
) -> Vec<Vec<Word>> {
    let median = alignment.median;
    let max = alignment.max_duration();
    let mut next = 0usize;
    let mut out = Vec::with_capacity(segments.len());
    for (token_count, seg_start, seg_end) in segments.iter_mut() {
        let mut saved = 0usize;
        let mut words: Vec<Word> = Vec::new();
        while next < alignment.words.len() && saved < *token_count {
            let timing = &alignment.words[next];
            if !timing.text.is_empty() {
                words.push(Word {
                    start: round2(offset + timing.start),
                    end: round2(offset + timing.end),
                    text: timing.text.clone(),
                });
            }
            saved += timing.tokens;
            next += 1;
        }
        if let Some(first) = words.first() {
            let first_end = first.end;
            // The first word after a pause swallowed the pause: shorten it (and the
            // second, if that is too long as well).
            let second_long = words.get(1).is_some_and(|w| w.end - first.start > max * 2.0);
            if first_end - *last_speech > median * 4.0 && (first_end - first.start > max || second_long) {
                if words.len() > 1 && words[1].end - words[1].start > max {
                    let boundary = (words[1].end / 2.0).max(words[1].end - max);
                    words[0].end = boundary;
                    words[1].start = boundary;
                }
                words[0].start = (words[0].end - max).max(0.0);
            }
            // Prefer the segment's own start when the first word is too long.
            if *seg_start < words[0].end && *seg_start - 0.5 > words[0].start {
                words[0].start = (words[0].end - median).min(*seg_start).max(0.0);
            } else {
                *seg_start = words[0].start;
            }
            let last = words.len() - 1;
            if *seg_end > words[last].start && *seg_end + 0.5 < words[last].end {
                words[last].end = (words[last].start + median).max(*seg_end);
            } else {
                *seg_end = words[last].end;
            }
            *last_speech = *seg_end;
        }
        out.push(words);
    }
    out
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtw_follows_the_cheap_diagonal() {
        // 3 tokens over 6 frames; token k is cheapest on frames 2k and 2k+1.
        let mut cost = vec![1f32; 18];
        for k in 0..3 {
            cost[k * 6 + 2 * k] = 0.0;
            cost[k * 6 + 2 * k + 1] = 0.0;
        }
        let (text, time) = dtw(&cost, 3, 6);
        assert_eq!(text.first(), Some(&0));
        assert_eq!(text.last(), Some(&2));
        assert_eq!(time.last(), Some(&5));
        // Each token first holds the path at its own frames.
        let firsts: Vec<usize> = (0..3)
            .map(|k| time[text.iter().position(|&t| t == k).unwrap_or(0)])
            .collect();
        assert_eq!(firsts, vec![0, 2, 4]);
    }

    #[test]
    fn median_filter_mirrors_the_edges() {
        let row = [5.0, 1.0, 1.0, 1.0, 9.0, 1.0, 1.0];
        assert_eq!(median_filter(&row, 3), vec![1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(median_filter(&[3.0], 7), vec![3.0]);
    }

    fn timing(text: &str, tokens: usize, start: f64, end: f64) -> WordTiming {
        WordTiming {
            text: text.to_owned(),
            tokens,
            start,
            end,
        }
    }

    #[test]
    fn punctuation_joins_its_word() {
        let mut words = vec![
            timing(" \"", 1, 0.0, 0.1),
            timing(" Hello", 1, 0.1, 0.5),
            timing(",", 1, 0.5, 0.5),
            timing(" world", 1, 0.6, 1.0),
            timing(".", 1, 1.0, 1.0),
        ];
        merge_punctuations(&mut words);
        let texts: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(texts, vec!["", " \" Hello,", "", " world.", ""]);
        assert_eq!(words.iter().map(|w| w.tokens).sum::<usize>(), 5);
        assert_eq!(words[1].tokens, 3);
    }

    #[test]
    fn words_go_to_their_segments_by_tokens() {
        let alignment = Alignment {
            words: vec![
                timing(" One", 1, 0.0, 0.4),
                timing(" two.", 2, 0.4, 0.8),
                timing(" Three", 1, 1.2, 1.6),
            ],
            median: 0.4,
        };
        let mut segments = vec![(3, 10.0, 10.9), (1, 11.1, 11.7)];
        let mut last = 10.0;
        let words = place(&alignment, &mut segments, 10.0, &mut last);
        assert_eq!(words[0].len(), 2);
        assert_eq!(words[1].len(), 1);
        assert_eq!(words[1][0].text, " Three");
        assert_eq!((words[1][0].start, words[1][0].end), (11.2, 11.6));
        // Bounds follow the words.
        assert_eq!(segments[0].1, 10.0);
        assert_eq!(segments[0].2, 10.8);
        assert_eq!(segments[1].1, 11.2);
        assert_eq!(last, 11.6);
    }
}
