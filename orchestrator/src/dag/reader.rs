//! Typed reads of YAML nodes that record a located diagnostic instead of stopping, so one
//! pass over a file reports every error.

use std::collections::BTreeMap;
use std::time::Duration;

use super::parse::Diagnostic;
use super::values::suggest;
use super::yaml::{Entry, Kind, Node, Pos};

/// Collects diagnostics for one file.
pub struct Reader<'f> {
    pub file: &'f str,
    pub diagnostics: Vec<Diagnostic>,
}

impl<'f> Reader<'f> {
    pub fn new(file: &'f str) -> Self {
        Reader {
            file,
            diagnostics: Vec::new(),
        }
    }

    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            file: self.file.to_string(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
        });
    }

    /// The entries of a mapping node by key; keys outside `known` are reported (with a
    /// suggestion) unless `known` is empty.
    pub fn mapping<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        known: &[&str],
    ) -> Option<BTreeMap<&'n str, &'n Entry>> {
        let Kind::Map(entries) = &node.kind else {
            self.error(
                node.pos,
                format!("{what} must be a mapping, found {}", node.type_name()),
            );
            return None;
        };
        let mut by_key = BTreeMap::new();
        for entry in entries {
            if !known.is_empty() && !known.contains(&entry.key.as_str()) {
                self.unknown_key(entry, what, known);
            } else {
                by_key.insert(entry.key.as_str(), entry);
            }
        }
        Some(by_key)
    }

    pub fn unknown_key(&mut self, entry: &Entry, what: &str, known: &[&str]) {
        let hint = match suggest(&entry.key, known) {
            Some(name) => format!("; did you mean `{name}`?"),
            None => format!("; expected one of: {}", known.join(", ")),
        };
        self.error(
            entry.key_pos,
            format!("unknown key `{}` in {what}{hint}", entry.key),
        );
    }

    pub fn string<'n>(&mut self, entry: &'n Entry, context: &str) -> Option<&'n str> {
        match &entry.value.kind {
            Kind::Str(text) => Some(text),
            _ => {
                self.type_error(entry, context, "a string");
                None
            }
        }
    }

    /// A string, or a number/boolean taken as text (e.g. `owner: 42`).
    pub fn text(&mut self, entry: &Entry, context: &str) -> Option<String> {
        match &entry.value.kind {
            Kind::Str(text) => Some(text.clone()),
            Kind::Int(number) => Some(number.to_string()),
            Kind::Float(number) => Some(number.to_string()),
            Kind::Bool(flag) => Some(flag.to_string()),
            _ => {
                self.type_error(entry, context, "a string");
                None
            }
        }
    }

    /// A string that may also be null (for optional keys written as `key: ~`).
    pub fn optional_string<'n>(
        &mut self,
        entry: &'n Entry,
        context: &str,
    ) -> Option<Option<&'n str>> {
        if entry.value.is_null() {
            return Some(None);
        }
        self.string(entry, context).map(Some)
    }

    pub fn bool(&mut self, entry: &Entry, context: &str) -> Option<bool> {
        match entry.value.kind {
            Kind::Bool(flag) => Some(flag),
            _ => {
                self.type_error(entry, context, "true or false");
                None
            }
        }
    }

    /// An integer in `min..=u32::MAX`.
    pub fn u32(&mut self, entry: &Entry, context: &str, min: u32) -> Option<u32> {
        let expected = if min == 0 {
            "a non-negative integer"
        } else {
            "a positive integer"
        };
        match entry.value.kind {
            Kind::Int(number) => match u32::try_from(number) {
                Ok(value) if value >= min => Some(value),
                _ => {
                    self.error(
                        entry.value.pos,
                        format!(
                            "{}: expected {expected}, found {number}",
                            self.key_name(entry, context)
                        ),
                    );
                    None
                }
            },
            _ => {
                self.type_error(entry, context, expected);
                None
            }
        }
    }

    /// `30s`, `5m`, `1h30m` (units ms s m h d), or a number of seconds.
    pub fn duration(&mut self, entry: &Entry, context: &str) -> Option<Duration> {
        let parsed = match &entry.value.kind {
            Kind::Str(text) => {
                updraft_operators::fields::parse_duration(text).map_err(|error| error.to_string())
            }
            Kind::Int(seconds) if *seconds >= 0 => Ok(Duration::from_secs(seconds.unsigned_abs())),
            Kind::Float(seconds) => Duration::try_from_secs_f64(*seconds)
                .map_err(|_| format!("invalid duration {seconds} (seconds)")),
            Kind::Int(seconds) => Err(format!("invalid duration {seconds} (seconds)")),
            _ => {
                self.type_error(entry, context, "a duration like `30s`, `5m` or `1h30m`");
                return None;
            }
        };
        match parsed {
            Ok(duration) => Some(duration),
            Err(message) => {
                self.error(
                    entry.value.pos,
                    format!("{}: {message}", self.key_name(entry, context)),
                );
                None
            }
        }
    }

    /// A list of strings, each with its position.
    pub fn string_list<'n>(
        &mut self,
        entry: &'n Entry,
        context: &str,
    ) -> Option<Vec<(&'n str, Pos)>> {
        let Kind::Seq(items) = &entry.value.kind else {
            self.type_error(entry, context, "a list of strings");
            return None;
        };
        let mut strings = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            match &item.kind {
                Kind::Str(text) => strings.push((text.as_str(), item.pos)),
                _ => {
                    ok = false;
                    self.error(
                        item.pos,
                        format!(
                            "{}: expected a list of strings, found {} in it",
                            self.key_name(entry, context),
                            item.type_name()
                        ),
                    );
                }
            }
        }
        ok.then_some(strings)
    }

    pub fn type_error(&mut self, entry: &Entry, context: &str, expected: &str) {
        let message = format!(
            "{}: expected {expected}, found {}",
            self.key_name(entry, context),
            entry.value.type_name()
        );
        self.error(entry.value.pos, message);
    }

    /// "`retries`" or "task `load`: `retries`".
    pub fn key_name(&self, entry: &Entry, context: &str) -> String {
        if context.is_empty() {
            format!("`{}`", entry.key)
        } else {
            format!("{context}: `{}`", entry.key)
        }
    }
}
