//! Input checks shared by the CLI and the API.

/// Names and labels: at most this many characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Emails: at most this many characters.
pub const MAX_EMAIL_CHARS: usize = 320;

/// Whether `text` looks like `local@domain.tld` (no spaces, one `@`, a dot in the domain
/// that is neither first nor last), at most [`MAX_EMAIL_CHARS`] characters.
pub fn is_email(text: &str) -> bool {
    if text.chars().count() > MAX_EMAIL_CHARS || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.split('.').count() >= 2
        && domain.split('.').all(|label| !label.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(is_email("demo@iofold.dev") && is_email("a.b+c@sub.example.co.uk"));
        for bad in ["", "demo", "@iofold.dev", "demo@", "demo@dev", "demo@.dev", "demo@iofold.", "a b@c.d", "a@b@c.d"] {
            assert!(!is_email(bad), "{bad}");
        }
        assert!(!is_email(&format!("{}@x.io", "a".repeat(320))));
    }
}
