//! Rules every account follows wherever it is made or used (the API, an invitation, a
//! CSV import, a login): the shape of usernames, reserved names and password lengths.

use crate::job::accounts::MIN_PASSWORD_CHARS;

/// Longest password, in characters (hashing a longer one is work for nothing).
pub const MAX_PASSWORD: usize = 1024;

/// Names no user may take (case-insensitively): `admin` is the bootstrap token's name
/// in the audit trail, so a user called that could pass for it.
pub const RESERVED_USERNAMES: [&str; 1] = ["admin"];

/// Longest username, in characters.
pub const MAX_USERNAME: usize = 64;

/// What is wrong with the shape of a username (already trimmed), if anything: 1 to
/// [`MAX_USERNAME`] letters, digits, `.`, `_`, `-` or `@` (an email address works),
/// starting with a letter or digit.
pub fn username_problem(username: &str) -> Option<String> {
    let allowed = |c: char| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    let starts_well = username.chars().next().is_some_and(char::is_alphanumeric);
    (!starts_well || username.chars().count() > MAX_USERNAME || !username.chars().all(allowed)).then(|| {
        format!("username: 1 to {MAX_USERNAME} letters, digits, `.`, `_`, `-` or `@`, starting with a letter or digit")
    })
}

/// Whether no new account may be called `username` (already trimmed).
pub fn is_reserved(username: &str) -> bool {
    RESERVED_USERNAMES.iter().any(|r| r.eq_ignore_ascii_case(username))
}

/// Why a new account may not be called `username`, if it may not.
pub fn reserved_problem(username: &str) -> Option<String> {
    is_reserved(username).then(|| format!("username: `{username}` is reserved; choose another"))
}

/// What is wrong with a new password, if anything.
pub fn password_problem(password: &str) -> Option<String> {
    let length = password.chars().count();
    if length < MIN_PASSWORD_CHARS {
        return Some(format!("password: at least {MIN_PASSWORD_CHARS} characters"));
    }
    if length > MAX_PASSWORD {
        return Some(format!("password: at most {MAX_PASSWORD} characters"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_rules() {
        for good in ["ana.b-c_d@example.com", "Zoë", "a", &"x".repeat(MAX_USERNAME)] {
            assert!(username_problem(good).is_none(), "{good:?}");
        }
        for bad in [
            "",
            "two words",
            "-dash",
            ".dot",
            "semi;colon",
            "tab\there",
            &"x".repeat(MAX_USERNAME + 1),
        ] {
            assert!(username_problem(bad).is_some(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn admin_is_reserved_in_any_case() {
        for name in ["admin", "ADMIN", "Admin"] {
            assert!(is_reserved(name) && reserved_problem(name).is_some(), "{name:?}");
        }
        for name in ["administrator", "ana", "admin2"] {
            assert!(reserved_problem(name).is_none(), "{name:?}");
        }
    }

    #[test]
    fn passwords_have_a_floor_and_a_ceiling() {
        assert!(password_problem("short").is_some());
        assert!(password_problem("long enough").is_none());
        assert!(password_problem(&"p".repeat(MAX_PASSWORD)).is_none());
        assert!(password_problem(&"p".repeat(MAX_PASSWORD + 1)).is_some());
    }
}
