//! Real speech for transcription tests, fetched (never committed) by
//! `deploy/fetch-models.sh`: Whisper models under `<cache>/models`, and the recordings
//! with known transcripts of the `pocketsphinx` source package under `<cache>/speech`.
//! Also the word error rate the accuracy checks use.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// `RUSHES_CACHE_DIR`, else `$HOME/.cache/rushes`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("RUSHES_CACHE_DIR").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/rushes"),
        PathBuf::from,
    )
}

/// Where the Whisper models are (`RUSHES_TEST_MODEL_DIR`, else `<cache>/models`), whether
/// or not they were fetched.
pub fn models_path() -> PathBuf {
    std::env::var_os("RUSHES_TEST_MODEL_DIR").map_or_else(|| cache_dir().join("models"), PathBuf::from)
}

fn fetched(dir: PathBuf) -> anyhow::Result<PathBuf> {
    if !dir.is_dir() {
        bail!(
            "{} is missing: run deploy/fetch-models.sh (or deploy/test.sh, which runs it) first",
            dir.display()
        );
    }
    Ok(dir)
}

/// The Whisper models (`RUSHES_TEST_MODEL_DIR`, else `<cache>/models`): `tiny.en/`, `base/`.
pub fn model_dir() -> anyhow::Result<PathBuf> {
    fetched(models_path())
}

/// The recordings (`RUSHES_TEST_SPEECH_DIR`, else `<cache>/speech`).
pub fn speech_dir() -> anyhow::Result<PathBuf> {
    fetched(std::env::var_os("RUSHES_TEST_SPEECH_DIR").map_or_else(|| cache_dir().join("speech"), PathBuf::from))
}

/// A recording with what is said in it.
#[derive(Debug, Clone)]
pub struct Recording {
    pub wav: PathBuf,
    pub text: String,
}

/// The LibriVox recordings (one reader, 3–7 s each) with their transcripts.
pub fn librivox() -> anyhow::Result<Vec<Recording>> {
    let dir = speech_dir()?.join("librivox");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let wav = entry?.path();
        if wav.extension().is_some_and(|e| e == "wav") {
            let text = std::fs::read_to_string(wav.with_extension("txt"))
                .with_context(|| format!("no transcript beside {}", wav.display()))?;
            out.push(Recording {
                wav,
                text: text.trim().to_owned(),
            });
        }
    }
    out.sort_by(|a, b| a.wav.cmp(&b.wav));
    if out.is_empty() {
        bail!("no recordings in {}", dir.display());
    }
    Ok(out)
}

/// `goforward.raw` (16 kHz s16le mono, "go forward ten meters") as a WAV at `dest`.
pub fn go_forward(dest: &Path) -> anyhow::Result<Recording> {
    let raw = speech_dir()?.join("goforward.raw");
    ffmpeg(&["-f", "s16le", "-ar", "16000", "-ac", "1", "-i"], &raw, &[], dest)?;
    Ok(Recording {
        wav: dest.to_path_buf(),
        text: "go forward ten meters".to_owned(),
    })
}

/// Runs `ffmpeg -y <before> input <after> dest` quietly.
pub fn ffmpeg(before: &[&str], input: &Path, after: &[&str], dest: &Path) -> anyhow::Result<()> {
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(before)
        .arg(input)
        .args(after)
        .arg(dest)
        .status()
        .context("cannot run ffmpeg")?;
    if !status.success() {
        bail!("ffmpeg failed making {}", dest.display());
    }
    Ok(())
}

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

/// A whole number below a million in words ("42" → "forty two").
fn number_words(n: u64, out: &mut Vec<String>) {
    if n >= 1000 {
        number_words(n / 1000, out);
        out.push("thousand".into());
        if !n.is_multiple_of(1000) {
            number_words(n % 1000, out);
        }
    } else if n >= 100 {
        out.push(ONES[(n / 100) as usize].into());
        out.push("hundred".into());
        if !n.is_multiple_of(100) {
            number_words(n % 100, out);
        }
    } else if n >= 20 {
        out.push(TENS[(n / 10) as usize].into());
        if !n.is_multiple_of(10) {
            out.push(ONES[(n % 10) as usize].into());
        }
    } else {
        out.push(ONES[n as usize].into());
    }
}

/// Words for comparison: lower case, punctuation dropped (apostrophes kept inside
/// words), digits spelled out, `Mr.`/`Mrs.` spelt out, hyphens as spaces.
pub fn normalise(text: &str) -> Vec<String> {
    let text = text.to_lowercase().replace("mr.", "mister").replace("mrs.", "missus");
    let mut words = Vec::new();
    for raw in text.split(|c: char| c.is_whitespace() || c == '-') {
        let word: String = raw
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '\'')
            .collect::<String>()
            .trim_matches('\'')
            .to_lowercase();
        if word.is_empty() {
            continue;
        }
        match word.parse::<u64>() {
            Ok(n) if n < 1_000_000 => number_words(n, &mut words),
            _ => words.push(word),
        }
    }
    words
}

/// Word-level Levenshtein distance: substitutions + deletions + insertions.
pub fn edit_distance(reference: &[String], hypothesis: &[String]) -> usize {
    let mut previous: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, rw) in reference.iter().enumerate() {
        let mut current = vec![i + 1; hypothesis.len() + 1];
        for (j, hw) in hypothesis.iter().enumerate() {
            let substitution = previous[j] + usize::from(rw != hw);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[hypothesis.len()]
}

/// Word error rate: edits / reference words, both normalised.
pub fn word_error_rate(reference: &str, hypothesis: &str) -> f64 {
    let r = normalise(reference);
    let h = normalise(hypothesis);
    if r.is_empty() {
        return if h.is_empty() { 0.0 } else { 1.0 };
    }
    edit_distance(&r, &h) as f64 / r.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalising_spells_digits_and_drops_punctuation() {
        assert_eq!(normalise("Go forward 10 meters."), ["go", "forward", "ten", "meters"]);
        assert_eq!(normalise("Mr. Smith"), ["mister", "smith"]);
        assert_eq!(
            normalise("It's 1,234 — well-known!"),
            [
                "it's", "one", "thousand", "two", "hundred", "thirty", "four", "well", "known"
            ]
        );
    }

    #[test]
    fn word_error_rate_counts_edits() {
        assert_eq!(word_error_rate("go forward ten meters", "Go forward, 10 meters!"), 0.0);
        assert_eq!(word_error_rate("go forward ten meters", "go four ten meters"), 0.25);
        assert_eq!(word_error_rate("a b c d", "a b"), 0.5);
        assert_eq!(word_error_rate("a b", "a x b y"), 1.0);
    }
}
