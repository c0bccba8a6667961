//! Whisper's special tokens, looked up by name in `tokenizer.json` (their ids differ
//! between English-only and multilingual models), and text ⇄ token conversion.

use std::path::Path;

use tokenizers::Tokenizer;

/// Seconds per timestamp token.
pub const TIME_PRECISION: f64 = 0.02;

/// The tokenizer and the special ids decoding needs.
pub struct Tokens {
    tokenizer: Tokenizer,
    pub eot: u32,
    pub sot: u32,
    pub sot_prev: u32,
    pub sot_lm: Option<u32>,
    pub transcribe: u32,
    pub translate: u32,
    pub no_timestamps: u32,
    /// `<|nospeech|>` or the older `<|nocaptions|>`.
    pub no_speech: Option<u32>,
    /// First timestamp token (`<|0.00|>`): `<|notimestamps|>` + 1 (the packaged
    /// `tokenizer.json` files do not list timestamps).
    pub timestamp_begin: u32,
    /// `(code, id)` of the language tokens, in id order (English only for `.en` models).
    pub languages: Vec<(String, u32)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("sot", &self.sot)
            .field("eot", &self.eot)
            .finish_non_exhaustive()
    }
}

/// Why a tokenizer cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TokensError(pub String);

impl Tokens {
    /// `multilingual`: whether the model is (English-only models have one vocabulary
    /// entry fewer; their `tokenizer.json` lists the languages all the same).
    pub fn from_file(path: &Path, multilingual: bool) -> Result<Tokens, TokensError> {
        let tokenizer = Tokenizer::from_file(path).map_err(|e| TokensError(format!("{}: {e}", path.display())))?;
        Tokens::new(tokenizer, multilingual)
    }

    pub fn new(tokenizer: Tokenizer, multilingual: bool) -> Result<Tokens, TokensError> {
        let id = |name: &str| tokenizer.token_to_id(name);
        let need = |name: &str| id(name).ok_or_else(|| TokensError(format!("tokenizer.json lacks `{name}`")));
        let sot = need("<|startoftranscript|>")?;
        let translate = need("<|translate|>")?;
        let no_timestamps = need("<|notimestamps|>")?;
        // Language tokens sit between <|startoftranscript|> and <|translate|>.
        let languages: Vec<(String, u32)> = (sot + 1..translate)
            .filter_map(|i| {
                let t = tokenizer.id_to_token(i)?;
                let code = t.strip_prefix("<|")?.strip_suffix("|>")?.to_owned();
                Some((code, i))
            })
            .collect();
        let languages = if multilingual {
            languages
        } else {
            languages.into_iter().take(1).collect()
        };
        Ok(Tokens {
            eot: need("<|endoftext|>")?,
            sot,
            sot_prev: need("<|startofprev|>")?,
            sot_lm: id("<|startoflm|>"),
            transcribe: need("<|transcribe|>")?,
            translate,
            no_timestamps,
            no_speech: id("<|nospeech|>").or_else(|| id("<|nocaptions|>")),
            timestamp_begin: no_timestamps + 1,
            languages,
            tokenizer,
        })
    }

    /// Whether the model knows several languages (an `.en` model lists only English).
    pub fn multilingual(&self) -> bool {
        self.languages.len() > 1
    }

    pub fn language_id(&self, code: &str) -> Option<u32> {
        self.languages.iter().find(|(c, _)| c == code).map(|&(_, i)| i)
    }

    pub fn language_code(&self, id: u32) -> Option<&str> {
        self.languages.iter().find(|&&(_, i)| i == id).map(|(c, _)| c.as_str())
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokensError> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| TokensError(format!("cannot encode text: {e}")))
    }

    /// Text of the text tokens among `ids` (special and timestamp tokens dropped).
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokensError> {
        let text: Vec<u32> = ids.iter().copied().filter(|&i| i < self.eot).collect();
        self.tokenizer
            .decode(&text, true)
            .map_err(|e| TokensError(format!("cannot decode tokens: {e}")))
    }

    /// Token ids that are never sampled when the model gives no list: OpenAI's
    /// non-speech symbols plus the task and start tokens.
    pub fn default_suppress(&self) -> Vec<u32> {
        let symbols: Vec<&str> = "\"#()*+/:;<=>@[\\]^_`{|}~「」『』"
            .split("")
            .filter(|s| !s.is_empty())
            .collect();
        let mut symbols: Vec<String> = symbols.into_iter().map(str::to_owned).collect();
        symbols.extend(
            "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪"
                .split(' ')
                .map(str::to_owned),
        );
        let miscellaneous = ["♩", "♪", "♫", "♬", "♭", "♮", "♯"];
        let mut out: Vec<u32> = Vec::new();
        if let Ok(ids) = self.encode(" -") {
            out.push(ids[0]);
        }
        if let Ok(ids) = self.encode(" '") {
            out.push(ids[0]);
        }
        for s in symbols.iter().map(String::as_str).chain(miscellaneous) {
            for text in [s.to_owned(), format!(" {s}")] {
                if let Ok(ids) = self.encode(&text)
                    && (ids.len() == 1 || (miscellaneous.contains(&s) && !ids.is_empty()))
                {
                    out.push(ids[0]);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}
