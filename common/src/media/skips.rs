//! Files a scan skips, in two kinds: `broken` (it looks like media — a media extension
//! or media magic bytes — but does not probe, or is refused: a playlist named `.mov`, a
//! truncated recording, more audio tracks than accepted) and `not_media` (nothing about
//! it says media, so it was never opened: notes, stills, sidecars).

use serde::{Deserialize, Serialize};

/// The reason a file that was never probed carries.
pub const NOT_MEDIA_REASON: &str = "not a media file";

/// Why a scan skipped a file, as stored in `scan_skips.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum SkipKind {
    Broken,
    NotMedia,
}

impl SkipKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Broken => "broken",
            Self::NotMedia => "not_media",
        }
    }

    /// The kind of a skip recorded without one (before kinds existed): only a file that
    /// was never probed carries [`NOT_MEDIA_REASON`].
    pub fn of_reason(reason: &str) -> Self {
        if reason == NOT_MEDIA_REASON {
            Self::NotMedia
        } else {
            Self::Broken
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_as_stored() {
        assert_eq!(SkipKind::Broken.as_str(), "broken");
        assert_eq!(serde_json::json!(SkipKind::NotMedia), "not_media");
        assert_eq!(SkipKind::of_reason(NOT_MEDIA_REASON), SkipKind::NotMedia);
        assert_eq!(SkipKind::of_reason("moov atom not found"), SkipKind::Broken);
    }
}
