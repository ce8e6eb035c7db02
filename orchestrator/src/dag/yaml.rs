//! A span-aware YAML tree: every node keeps its line and column, so semantic errors (an unknown
//! upstream id, a cycle) point at the exact place in the file. Plain serde deserialisation drops
//! positions and stops at the first error; this tree lets the builder report every error.
//!
//! Built from `yaml-rust2`'s event stream with an explicit stack (no recursion, so deep nesting
//! cannot overflow the stack). Aliases expand to a copy of their anchor, bounded in total size.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based position in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn from_marker(marker: &Marker) -> Pos {
        Pos {
            line: marker.line().max(1),
            column: marker.col() + 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// A mapping entry; keys are scalars, kept as text.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

/// A located problem found while reading the YAML itself.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

/// Nodes an alias expansion may create before the document is refused ("billion laughs").
const MAX_NODES: usize = 1_000_000;
/// Deepest nesting accepted.
const MAX_DEPTH: usize = 200;

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(text) => Some(text),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, Kind::Null)
    }

    /// A short description of the node's type for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    /// The node as JSON (operator configs, param defaults).
    pub fn to_json(&self) -> Value {
        match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(flag) => Value::Bool(*flag),
            Kind::Int(number) => Value::Number((*number).into()),
            Kind::Float(number) => Number::from_f64(*number).map_or(Value::Null, Value::Number),
            Kind::Str(text) => Value::String(text.clone()),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|entry| (entry.key.clone(), entry.value.to_json()))
                    .collect::<Map<_, _>>(),
            ),
        }
    }

    /// Visits every string scalar with its position (template syntax checks).
    pub fn for_each_string<'a>(&'a self, visit: &mut dyn FnMut(&'a str, Pos)) {
        match &self.kind {
            Kind::Str(text) => visit(text, self.pos),
            Kind::Seq(items) => items.iter().for_each(|item| item.for_each_string(visit)),
            Kind::Map(entries) => entries
                .iter()
                .for_each(|entry| entry.value.for_each_string(visit)),
            _ => {}
        }
    }
}

/// Parses one YAML document. An empty file is a `Null` node.
pub fn parse(source: &str) -> Result<Node, Vec<YamlError>> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(source);
    let mut documents = 0;
    loop {
        let (event, marker) = match parser.next_token() {
            Ok(pair) => pair,
            Err(error) => {
                let pos = Pos::from_marker(error.marker());
                builder.errors.push(YamlError {
                    pos,
                    message: format!("YAML syntax error: {}", error.info()),
                });
                return Err(builder.errors);
            }
        };
        let pos = Pos::from_marker(&marker);
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    builder.errors.push(YamlError {
                        pos,
                        message: "a DAG file holds one YAML document; found a second `---`".into(),
                    });
                    return Err(builder.errors);
                }
            }
            other => {
                if let Err(error) = builder.event(other, pos) {
                    builder.errors.push(error);
                    return Err(builder.errors);
                }
            }
        }
    }
    if !builder.errors.is_empty() {
        return Err(builder.errors);
    }
    Ok(builder.root.unwrap_or(Node {
        pos: Pos { line: 1, column: 1 },
        kind: Kind::Null,
    }))
}

enum Open {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<Entry>,
        /// Each key's line, for the duplicate check (a scan of `entries` per key is O(n²)).
        lines: HashMap<String, usize>,
        pending_key: Option<(String, Pos)>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    nodes: usize,
    errors: Vec<YamlError>,
}

impl Builder {
    fn event(&mut self, event: Event, pos: Pos) -> Result<(), YamlError> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let node = Node {
                    pos,
                    kind: scalar(text, style, tag.as_ref()),
                };
                self.finish(node, anchor)
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().ok_or_else(|| YamlError {
                    pos,
                    message: "YAML syntax error: alias to an unknown anchor".into(),
                })?;
                self.nodes += count(&node);
                self.finish(node, 0)
            }
            Event::SequenceStart(anchor, _) => self.open(
                Open::Seq {
                    pos,
                    anchor,
                    items: Vec::new(),
                },
                pos,
            ),
            Event::MappingStart(anchor, _) => self.open(
                Open::Map {
                    pos,
                    anchor,
                    entries: Vec::new(),
                    lines: HashMap::new(),
                    pending_key: None,
                },
                pos,
            ),
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Open::Seq { pos, anchor, items }) => self.finish(
                    Node {
                        pos,
                        kind: Kind::Seq(items),
                    },
                    anchor,
                ),
                Some(Open::Map {
                    pos,
                    anchor,
                    entries,
                    ..
                }) => self.finish(
                    Node {
                        pos,
                        kind: Kind::Map(entries),
                    },
                    anchor,
                ),
                None => Ok(()),
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => Ok(()),
        }
    }

    fn open(&mut self, open: Open, pos: Pos) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(YamlError {
                pos,
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        self.stack.push(open);
        Ok(())
    }

    /// Places a completed node in its parent (or as the root).
    fn finish(&mut self, node: Node, anchor: usize) -> Result<(), YamlError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(YamlError {
                pos: node.pos,
                message: "document too large (alias expansion?)".into(),
            });
        }
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq { items, .. }) => items.push(node),
            Some(Open::Map {
                entries,
                lines,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => {
                    let key = match &node.kind {
                        Kind::Str(text) => text.clone(),
                        Kind::Int(number) => number.to_string(),
                        Kind::Float(number) => number.to_string(),
                        Kind::Bool(flag) => flag.to_string(),
                        Kind::Null => "null".to_string(),
                        Kind::Seq(_) | Kind::Map(_) => {
                            self.errors.push(YamlError {
                                pos: node.pos,
                                message: "a mapping key must be a scalar, not a list or mapping"
                                    .into(),
                            });
                            String::new()
                        }
                    };
                    *pending_key = Some((key, node.pos));
                }
                Some((key, key_pos)) => {
                    if let Some(first_line) = lines.get(&key) {
                        self.errors.push(YamlError {
                            pos: key_pos,
                            message: format!("duplicate key `{key}` (first at line {first_line})"),
                        });
                    } else {
                        lines.insert(key.clone(), key_pos.line);
                        entries.push(Entry {
                            key,
                            key_pos,
                            value: node,
                        });
                    }
                }
            },
        }
        Ok(())
    }
}

fn count(node: &Node) -> usize {
    match &node.kind {
        Kind::Seq(items) => 1 + items.iter().map(count).sum::<usize>(),
        Kind::Map(entries) => {
            1 + entries
                .iter()
                .map(|entry| 1 + count(&entry.value))
                .sum::<usize>()
        }
        _ => 1,
    }
}

/// YAML 1.2 core schema for plain scalars; quoted and block scalars (and `!!str`) are strings.
fn scalar(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Kind {
    if let Some(tag) = tag
        && tag.suffix == "str"
    {
        return Kind::Str(text);
    }
    if style != TScalarStyle::Plain {
        return Kind::Str(text);
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" => return Kind::Bool(true),
        "false" | "False" | "FALSE" => return Kind::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Kind::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Kind::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Kind::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(number) = i64::from_str_radix(hex, 16)
    {
        return Kind::Int(number);
    }
    if let Some(octal) = text.strip_prefix("0o")
        && let Ok(number) = i64::from_str_radix(octal, 8)
    {
        return Kind::Int(number);
    }
    if let Ok(number) = text.parse::<i64>() {
        return Kind::Int(number);
    }
    let looks_numeric = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && text.bytes().any(|b| b.is_ascii_digit());
    if looks_numeric && let Ok(number) = text.parse::<f64>() {
        return Kind::Float(number);
    }
    Kind::Str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_entries(node: &Node) -> &[Entry] {
        match &node.kind {
            Kind::Map(entries) => entries,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn positions_are_one_based_line_and_column() {
        let root = parse("a: 1\nlist:\n  - x\n  - {b: true}\n").unwrap();
        let entries = map_entries(&root);
        assert_eq!(entries[0].key_pos, Pos { line: 1, column: 1 });
        assert_eq!(entries[0].value.pos, Pos { line: 1, column: 4 });
        let Kind::Seq(items) = &entries[1].value.kind else {
            panic!()
        };
        assert_eq!(items[0].pos, Pos { line: 3, column: 5 });
        assert_eq!(items[1].pos, Pos { line: 4, column: 5 });
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let root = parse("a: 1\nb: '1'\nc: 1.5\nd: yes\ne: ~\nf: TRUE\ng: 2023-09-03\n").unwrap();
        let kinds: Vec<&Kind> = map_entries(&root)
            .iter()
            .map(|entry| &entry.value.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                &Kind::Int(1),
                &Kind::Str("1".into()),
                &Kind::Float(1.5),
                &Kind::Str("yes".into()),
                &Kind::Null,
                &Kind::Bool(true),
                &Kind::Str("2023-09-03".into())
            ]
        );
    }

    #[test]
    fn aliases_copy_their_anchor_and_duplicate_keys_are_errors() {
        let root = parse("base: &b {x: 1}\nother: *b\n").unwrap();
        assert_eq!(
            root.to_json(),
            serde_json::json!({"base": {"x": 1}, "other": {"x": 1}})
        );
        let errors = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(errors[0].pos, Pos { line: 3, column: 1 });
        assert!(
            errors[0].message.contains("duplicate key `a`"),
            "{errors:?}"
        );
    }

    #[test]
    fn syntax_errors_are_located_and_deep_nesting_is_refused() {
        let errors = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(
            errors[0].message.starts_with("YAML syntax error"),
            "{errors:?}"
        );
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        assert!(parse(&deep).is_err());
    }
}
