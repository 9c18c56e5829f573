//! Step 1 of 3: TOML text → a spanned syntax tree.
//!
//! `toml_edit`'s `ImDocument` keeps the byte span of every key and value. We copy
//! what validation needs into a small tree of our own (`Node`), so the validator
//! sees one shape for `[table]`, inline `{ tables }` and dotted keys alike and
//! never deals with formatting details.

use crate::diag::Span;
use toml_edit::{ImDocument, Item, Value};

/// A TOML value with the byte span it came from.
#[derive(Debug)]
pub(crate) struct Node {
    pub span: Span,
    pub kind: Kind,
}

/// The kinds of TOML values.
#[derive(Debug)]
pub(crate) enum Kind {
    Str(String),
    Int(i64),
    Float,
    Bool(bool),
    Datetime,
    Array(Vec<Node>),
    Table(Vec<Entry>),
}

/// One `key = value` of a table, in document order.
#[derive(Debug)]
pub(crate) struct Entry {
    pub key: String,
    pub key_span: Span,
    pub value: Node,
}

impl Kind {
    /// How the kind is called in messages: "a string", "an integer", ...
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Kind::Str(_) => "a string",
            Kind::Int(_) => "an integer",
            Kind::Float => "a float",
            Kind::Bool(_) => "a boolean",
            Kind::Datetime => "a date-time",
            Kind::Array(_) => "an array",
            Kind::Table(_) => "a table",
        }
    }
}

/// A TOML syntax error: where, and the parser's message.
pub(crate) struct SyntaxError {
    pub span: Span,
    pub message: String,
}

/// Parses TOML text into a tree whose root is a table.
pub(crate) fn parse(src: &str) -> Result<Node, SyntaxError> {
    let doc = ImDocument::parse(src).map_err(|e| SyntaxError {
        span: e.span().unwrap_or(0..0),
        // The parser's message can span lines ("expected ..., found ..."); a
        // diagnostic is one line.
        message: e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
    })?;
    let root = 0..0;
    Ok(Node {
        kind: Kind::Table(table_entries(doc.as_table(), &root)),
        span: root,
    })
}

fn table_entries(t: &toml_edit::Table, parent: &Span) -> Vec<Entry> {
    t.iter()
        .filter_map(|(k, item)| {
            // Implicit tables (`[a.b]` without `[a]`) have no span of their own:
            // fall back to the key, then to the parent, so every node points
            // somewhere sensible.
            let key_span = t.key(k).and_then(|k| k.span()).unwrap_or(parent.clone());
            item_node(item, &key_span).map(|value| Entry {
                key: k.to_owned(),
                key_span,
                value,
            })
        })
        .collect()
}

fn item_node(item: &Item, fallback: &Span) -> Option<Node> {
    match item {
        Item::None => None,
        Item::Value(v) => Some(value_node(v, fallback)),
        Item::Table(t) => Some(table_node(t, fallback)),
        Item::ArrayOfTables(a) => {
            let span = a.span().unwrap_or(fallback.clone());
            Some(Node {
                kind: Kind::Array(a.iter().map(|t| table_node(t, &span)).collect()),
                span,
            })
        }
    }
}

fn table_node(t: &toml_edit::Table, fallback: &Span) -> Node {
    let span = t.span().unwrap_or(fallback.clone());
    Node {
        kind: Kind::Table(table_entries(t, &span)),
        span,
    }
}

fn value_node(v: &Value, fallback: &Span) -> Node {
    let span = v.span().unwrap_or(fallback.clone());
    let kind = match v {
        Value::String(s) => Kind::Str(s.value().clone()),
        Value::Integer(i) => Kind::Int(*i.value()),
        Value::Float(_) => Kind::Float,
        Value::Boolean(b) => Kind::Bool(*b.value()),
        Value::Datetime(_) => Kind::Datetime,
        Value::Array(a) => Kind::Array(a.iter().map(|x| value_node(x, &span)).collect()),
        Value::InlineTable(t) => Kind::Table(
            t.iter()
                .map(|(k, v)| {
                    let key_span = t.key(k).and_then(|k| k.span()).unwrap_or(span.clone());
                    Entry {
                        key: k.to_owned(),
                        value: value_node(v, &key_span),
                        key_span,
                    }
                })
                .collect(),
        ),
    };
    Node { span, kind }
}
