//! The safeguards of the destructive commands. Each refusal happens before any connection is
//! opened, says why, and says that nothing was touched.

use anyhow::bail;

use crate::db::DatabaseUrl;

/// Parts of a database URL that suggest a production database; `nuke` refuses them.
pub const PRODUCTION_MARKERS: &[&str] = &["prod", ".com", "rds.amazonaws"];

/// The first production marker the URL contains (case-insensitive), if any.
pub fn production_like(url: &str) -> Option<&'static str> {
    let url = url.to_ascii_lowercase();
    PRODUCTION_MARKERS.iter().copied().find(|marker| url.contains(marker))
}

/// The URL with any password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Refuses `command` in production.
pub fn not_in_production(command: &str, production: bool, effect: &str) -> anyhow::Result<()> {
    if production {
        bail!(
            "{command} is refused in production (APP_ENV or NODE_ENV is `production`): it would {effect}. \
             Nothing was touched"
        );
    }
    Ok(())
}

/// Refuses `command` on a URL that looks like a production database.
pub fn not_production_like(command: &str, url: &DatabaseUrl) -> anyhow::Result<()> {
    if let Some(marker) = production_like(url.as_str()) {
        bail!(
            "{command} is refused: the database URL `{}` contains `{marker}`, which looks like a production \
             database ({command} refuses URLs containing any of {}). Nothing was touched",
            redact(url.as_str()),
            PRODUCTION_MARKERS.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

/// Refuses `command` without `--yes`.
pub fn confirmed(command: &str, yes: bool, url: &DatabaseUrl, effect: &str) -> anyhow::Result<()> {
    if !yes {
        bail!(
            "{command} would {effect} in `{}`. Nothing was touched; run `iofold-graph {command} --yes` to confirm",
            redact(url.as_str())
        );
    }
    Ok(())
}

/// Refuses a SQLite path with no file: opening it would create an empty database.
pub fn existing_sqlite(command: &str, url: &DatabaseUrl) -> anyhow::Result<()> {
    if let DatabaseUrl::Sqlite(path) = url {
        if !std::path::Path::new(path).is_file() {
            bail!("{command}: there is no SQLite database at `{path}`");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_like_urls_are_recognised() {
        assert_eq!(production_like("postgres://u@db.example.com/app"), Some(".com"));
        assert_eq!(production_like("postgres://u@x.abc.eu-west-1.RDS.amazonaws.net/app"), Some("rds.amazonaws"));
        assert_eq!(production_like("/srv/iofold-PROD.db"), Some("prod"));
        assert_eq!(production_like("postgres://postgres@127.0.0.1:5432/test"), None);
        assert_eq!(production_like("./iofold.db"), None);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("./iofold.db"), "./iofold.db");
    }
}
