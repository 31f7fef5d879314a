//! Who a session belongs to: [`Principal`], its kind, ID, attributes and scopes.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The authenticated party of a session: a kind (`"user"`, `"service"`...), an ID, free-form
/// attributes and a set of scopes that guards check.
///
/// # Example
///
/// ```
/// use axum_tessera::Principal;
///
/// let p = Principal::user("42").with_scopes(["admin", "billing"]);
/// assert_eq!(p.id(), "42");
/// assert!(p.has_scope("admin"));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Principal {
    kind: String,
    id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    attributes: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    scopes: BTreeSet<String>,
}

impl Principal {
    /// A principal of `kind` with `id`, no attributes and no scopes.
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            id: id.into(),
            attributes: BTreeMap::new(),
            scopes: BTreeSet::new(),
        }
    }

    /// A principal of kind `"user"`.
    pub fn user(id: impl Into<String>) -> Self {
        Self::new("user", id)
    }

    /// Replaces the scopes.
    #[must_use]
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Adds an attribute (display name, tenant...). Not for secrets: attributes are stored in
    /// the clear.
    #[must_use]
    pub fn with_attribute(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// The kind, such as `"user"`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The ID, unique within its kind.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key a store's per-principal index files this principal under: kind and ID,
    /// length-prefixed so that no two principals share it (user `42` and service `42` are
    /// different principals, and `a:b` / `c` never collides with `a` / `b:c`).
    ///
    /// ```
    /// use axum_tessera::Principal;
    ///
    /// assert_eq!(Principal::user("42").index_key(), "4:user:42");
    /// assert_ne!(Principal::user("42").index_key(), Principal::new("service", "42").index_key());
    /// ```
    pub fn index_key(&self) -> String {
        format!("{}:{}:{}", self.kind.len(), self.kind, self.id)
    }

    /// One attribute, if set.
    pub fn attribute(&self, name: &str) -> Option<&Value> {
        self.attributes.get(name)
    }

    /// The scopes granted to this principal.
    pub fn scopes(&self) -> &BTreeSet<String> {
        &self.scopes
    }

    /// Whether `scope` is granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    pub(crate) fn set_scopes(&mut self, scopes: BTreeSet<String>) {
        self.scopes = scopes;
    }
}
