//! Flash messages: [`Flash`] (a message with a [`FlashLevel`]) and the [`Session`] methods
//! that queue and take them.
//!
//! # Example
//!
//! ```
//! use axum::response::Redirect;
//! use axum_tessera::{Flash, FlashLevel, Session};
//!
//! async fn save(session: Session) -> Redirect {
//!     session.flash(Flash::success("Saved."));
//!     session.flash("Plain text is an info message."); // FlashLevel::Info
//!     Redirect::to("/")
//! }
//!
//! async fn page(session: Session) -> String {
//!     session
//!         .take_flashes()
//!         .iter()
//!         .map(|f| format!("[{}] {}", f.level(), f.message()))
//!         .collect::<Vec<_>>()
//!         .join("\n")
//! }
//! # let _ = FlashLevel::Error;
//! ```

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::session::Session;

/// How a [`Flash`] message should look: a page renders each level in its own colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FlashLevel {
    /// Something the user asked for worked.
    Success,
    /// Neutral news (the level of a plain string).
    Info,
    /// Worth the user's attention; nothing failed.
    Warning,
    /// Something the user asked for failed.
    Error,
}

impl FlashLevel {
    /// The level's name as stored and as a CSS class would use it: `success`, `info`,
    /// `warning`, `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for FlashLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message queued for the next page the user sees ("Signed in.", "Payment failed."), with
/// its level.
///
/// A plain `&str` or `String` converts into an [`FlashLevel::Info`] message, so
/// `session.flash("Saved.")` works as before levels existed.
///
/// # Example
///
/// ```
/// use axum_tessera::{Flash, FlashLevel};
///
/// let f = Flash::error("Wrong password.");
/// assert_eq!((f.level(), f.message()), (FlashLevel::Error, "Wrong password."));
/// assert_eq!(Flash::from("hi").level(), FlashLevel::Info);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flash {
    level: FlashLevel,
    message: String,
}

impl Flash {
    /// A message at `level`.
    pub fn new(level: FlashLevel, message: impl Into<String>) -> Self {
        Self {
            level,
            message: message.into(),
        }
    }

    /// A [`FlashLevel::Success`] message.
    pub fn success(message: impl Into<String>) -> Self {
        Self::new(FlashLevel::Success, message)
    }

    /// A [`FlashLevel::Info`] message.
    pub fn info(message: impl Into<String>) -> Self {
        Self::new(FlashLevel::Info, message)
    }

    /// A [`FlashLevel::Warning`] message.
    pub fn warning(message: impl Into<String>) -> Self {
        Self::new(FlashLevel::Warning, message)
    }

    /// A [`FlashLevel::Error`] message.
    pub fn error(message: impl Into<String>) -> Self {
        Self::new(FlashLevel::Error, message)
    }

    /// The level.
    pub fn level(&self) -> FlashLevel {
        self.level
    }

    /// The text, unescaped: escape it for the page it goes into.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<&str> for Flash {
    fn from(message: &str) -> Self {
        Self::info(message)
    }
}

impl From<String> for Flash {
    fn from(message: String) -> Self {
        Self::info(message)
    }
}

/// An info message is stored as the plain string the previous release wrote, so instances
/// of both releases read it during a rolling upgrade; other levels as
/// `{"level": .., "message": ..}`.
impl Serialize for Flash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        if self.level == FlashLevel::Info {
            return serializer.serialize_str(&self.message);
        }
        let mut s = serializer.serialize_struct("Flash", 2)?;
        s.serialize_field("level", &self.level)?;
        s.serialize_field("message", &self.message)?;
        s.end()
    }
}

/// Records written before flash messages had levels hold plain strings; both forms load, so
/// an upgrade loses no queued message.
impl<'de> Deserialize<'de> for Flash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Plain(String),
            Leveled { level: FlashLevel, message: String },
        }
        Ok(match Stored::deserialize(deserializer)? {
            Stored::Plain(message) => Self::info(message),
            Stored::Leveled { level, message } => Self { level, message },
        })
    }
}

impl Session {
    /// Queues a flash message for a later request; a plain string is an
    /// [`FlashLevel::Info`] message.
    pub fn flash(&self, message: impl Into<Flash>) {
        let mut st = self.lock();
        st.record.flash_mut().push(message.into());
        st.changes.flash = true;
    }

    /// Takes the queued flash messages, oldest first, removing them from the session.
    pub fn take_flashes(&self) -> Vec<Flash> {
        let mut st = self.lock();
        if st.record.flash().is_empty() {
            return Vec::new();
        }
        st.changes.flash = true;
        std::mem::take(st.record.flash_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_stored_forms_load() {
        struct Case {
            name: &'static str,
            json: &'static str,
            expect: Flash,
        }
        let cases = [
            Case {
                name: "previous release: a plain string",
                json: r#""Signed in.""#,
                expect: Flash::info("Signed in."),
            },
            Case {
                name: "with a level",
                json: r#"{"level":"warning","message":"Low disk"}"#,
                expect: Flash::warning("Low disk"),
            },
        ];
        for case in cases {
            let got: Flash = serde_json::from_str(case.json).expect(case.name);
            assert_eq!(got, case.expect, "{}", case.name);
        }
        let unknown = serde_json::from_str::<Flash>(r#"{"level":"shout","message":"x"}"#);
        assert!(unknown.is_err(), "an unknown level is corrupt, not guessed");
    }

    #[test]
    fn stored_as_level_and_message_or_a_plain_string() {
        let json = serde_json::to_string(&Flash::error("No")).unwrap();
        assert_eq!(json, r#"{"level":"error","message":"No"}"#);
        let info = serde_json::to_string(&Flash::info("Hi")).unwrap();
        assert_eq!(info, r#""Hi""#, "the previous release's form");
    }
}
