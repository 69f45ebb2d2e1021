//! SIP accounts as entered: one at a time, CSV (`username,password[,realm[,extension]]`, one
//! per line) or a numeric range with templates. Every problem is reported with its line; a
//! batch with any problem saves nothing.

use std::collections::HashSet;

/// One account in clear (before encryption).
#[derive(Clone, PartialEq, Eq)]
pub struct AccountRow {
    /// Auth user name.
    pub username: String,
    /// Password.
    pub password: String,
    /// Realm.
    pub realm: Option<String>,
    /// Extension / AOR user.
    pub extension: Option<String>,
}

impl std::fmt::Debug for AccountRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountRow")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("realm", &self.realm)
            .field("extension", &self.extension)
            .finish()
    }
}

/// The associated data binding an encrypted password to its registrar and username.
pub fn aad(registrar_id: i64, username: &str) -> String {
    format!("sip-account:{registrar_id}:{username}")
}

/// Most accounts one request may add.
pub const MAX_BATCH: usize = 10_000;

fn check_token(what: &str, v: &str, max: usize) -> Result<(), String> {
    if v.chars().count() > max {
        return Err(format!("{what} is longer than {max} characters"));
    }
    if v.chars().any(|c| {
        c.is_whitespace() || c.is_control() || matches!(c, '@' | ':' | ';' | '<' | '>' | '"')
    }) {
        return Err(format!(
            "{what} {v:?} contains a space or one of @ : ; < > \""
        ));
    }
    Ok(())
}

/// Validates one account; the message names the field.
pub fn check_row(r: &AccountRow) -> Result<(), String> {
    if r.username.is_empty() {
        return Err("username is required".into());
    }
    check_token("username", &r.username, 64)?;
    if r.password.is_empty() {
        return Err("password is required".into());
    }
    if r.password.chars().count() > 128 || r.password.chars().any(char::is_control) {
        return Err("password must be at most 128 characters, without control characters".into());
    }
    if let Some(realm) = &r.realm {
        check_token("realm", realm, 253)?;
    }
    if let Some(ext) = &r.extension {
        check_token("extension", ext, 64)?;
    }
    Ok(())
}

fn opt(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Parses CSV text; blank lines and lines starting with `#` are skipped. Errors are
/// `(line number from 1, message)`.
pub fn parse_csv(text: &str) -> Result<Vec<AccountRow>, Vec<(usize, String)>> {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = t.split(',').collect();
        if cols.len() < 2 || cols.len() > 4 {
            errors.push((
                n,
                format!(
                    "expected username,password[,realm[,extension]] but found {} field(s)",
                    cols.len()
                ),
            ));
            continue;
        }
        let row = AccountRow {
            username: cols[0].trim().to_string(),
            // Passwords keep inner spaces but not the ones around the comma.
            password: cols[1].trim().to_string(),
            realm: opt(cols.get(2).copied()),
            extension: opt(cols.get(3).copied()),
        };
        match check_row(&row) {
            Ok(()) => rows.push((n, row)),
            Err(e) => errors.push((n, e)),
        }
    }
    let mut seen = HashSet::new();
    for (n, r) in &rows {
        if !seen.insert(r.username.clone()) {
            errors.push((*n, format!("username {} appears twice", r.username)));
        }
    }
    if rows.is_empty() && errors.is_empty() {
        errors.push((1, "no accounts found".into()));
    }
    if rows.len() > MAX_BATCH {
        errors.push((1, format!("at most {MAX_BATCH} accounts per request")));
    }
    if errors.is_empty() {
        Ok(rows.into_iter().map(|(_, r)| r).collect())
    } else {
        errors.sort();
        Err(errors)
    }
}

/// A numeric range: usernames and passwords from templates where `{n}` is the number,
/// zero-padded to `width` digits.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeSpec {
    /// First number.
    pub from: u64,
    /// Last number (inclusive).
    pub to: u64,
    /// Minimum digits (zero-padded).
    #[serde(default)]
    pub width: usize,
    /// Username template, default `{n}`.
    #[serde(default)]
    pub username_template: Option<String>,
    /// Password template, e.g. `secret{n}`.
    pub password_template: String,
    /// Realm for every account.
    #[serde(default)]
    pub realm: Option<String>,
}

/// Expands a range; errors as `(field, message)`.
pub fn expand_range(r: &RangeSpec) -> Result<Vec<AccountRow>, (&'static str, String)> {
    if r.to < r.from {
        return Err(("range.to", "to must not be below from".into()));
    }
    let count = r.to - r.from + 1;
    if count > MAX_BATCH as u64 {
        return Err((
            "range.to",
            format!("at most {MAX_BATCH} accounts per request"),
        ));
    }
    let user_t = r.username_template.clone().unwrap_or_else(|| "{n}".into());
    if !user_t.contains("{n}") {
        return Err((
            "range.usernameTemplate",
            "the username template must contain {n}".into(),
        ));
    }
    if r.width > 20 {
        return Err(("range.width", "width must be at most 20".into()));
    }
    let mut rows = Vec::new();
    for n in r.from..=r.to {
        let num = format!("{n:0width$}", width = r.width);
        let row = AccountRow {
            username: user_t.replace("{n}", &num),
            password: r.password_template.replace("{n}", &num),
            realm: opt(r.realm.as_deref()),
            extension: None,
        };
        check_row(&row).map_err(|e| ("range", format!("account {n}: {e}")))?;
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_are_checked_one_by_one() {
        let ok =
            parse_csv("# header\n1001,pw1\n\n1002, pw 2 ,pbx.corp.net\n1003,pw3,,2003\n").unwrap();
        assert_eq!(ok.len(), 3);
        assert_eq!(ok[1].password, "pw 2");
        assert_eq!(ok[1].realm.as_deref(), Some("pbx.corp.net"));
        assert_eq!(
            (ok[2].realm.as_deref(), ok[2].extension.as_deref()),
            (None, Some("2003"))
        );

        let err = parse_csv("1001,pw\n1002\n10 03,pw\n1001,pw\n1004,\n1005,a,b,c,d\n").unwrap_err();
        assert_eq!(
            err,
            vec![
                (
                    2,
                    "expected username,password[,realm[,extension]] but found 1 field(s)"
                        .to_string()
                ),
                (
                    3,
                    "username \"10 03\" contains a space or one of @ : ; < > \"".to_string()
                ),
                (4, "username 1001 appears twice".to_string()),
                (5, "password is required".to_string()),
                (
                    6,
                    "expected username,password[,realm[,extension]] but found 5 field(s)"
                        .to_string()
                ),
            ]
        );
        assert_eq!(
            parse_csv("\n# only a comment\n").unwrap_err(),
            vec![(1, "no accounts found".to_string())]
        );
    }

    #[test]
    fn ranges_expand_with_padding() {
        let spec = RangeSpec {
            from: 8,
            to: 11,
            width: 3,
            username_template: Some("u{n}".into()),
            password_template: "pw-{n}".into(),
            realm: None,
        };
        let rows = expand_range(&spec).unwrap();
        let names: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.username.as_str(), r.password.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("u008", "pw-008"),
                ("u009", "pw-009"),
                ("u010", "pw-010"),
                ("u011", "pw-011")
            ]
        );
        let too_many = RangeSpec {
            from: 1,
            to: 20_000,
            ..spec.clone()
        };
        assert_eq!(expand_range(&too_many).unwrap_err().0, "range.to");
        let backwards = RangeSpec {
            from: 5,
            to: 4,
            ..spec.clone()
        };
        assert_eq!(expand_range(&backwards).unwrap_err().0, "range.to");
        let fixed = RangeSpec {
            username_template: Some("same".into()),
            ..spec
        };
        assert_eq!(
            expand_range(&fixed).unwrap_err().0,
            "range.usernameTemplate"
        );
    }
}
