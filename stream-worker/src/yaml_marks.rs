//! Line and column of every node of a YAML document, by path (`columns[2].cql_type`), so that
//! semantic errors found after deserialising can still point at `file:line:col`.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Positions of every node in a YAML document, by path (`columns[2].cql_type`).
pub(crate) struct Marks(HashMap<String, (usize, usize)>);

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

struct MarkCollector {
    stack: Vec<Frame>,
    marks: HashMap<String, (usize, usize)>,
}

impl MarkCollector {
    /// The path of the node starting now, or `None` when the node is a mapping key.
    fn node_path(&mut self, scalar: Option<&str>) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let child = format!("{path}[{next}]");
                *next += 1;
                Some(child)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(key) if path.is_empty() => Some(key),
                Some(key) => Some(format!("{path}.{key}")),
                None => {
                    *key = Some(scalar.unwrap_or("?").to_string());
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for MarkCollector {
    fn on_event(&mut self, event: Event, mark: Marker) {
        // yaml-rust2 columns are 0-based; we report 1-based like serde_yaml_ng.
        let position = (mark.line(), mark.col() + 1);
        match event {
            Event::Scalar(value, ..) => {
                if let Some(path) = self.node_path(Some(&value)) {
                    self.marks.entry(path).or_insert(position);
                }
            }
            Event::Alias(_) => {
                if let Some(path) = self.node_path(Some("*")) {
                    self.marks.entry(path).or_insert(position);
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let path = self.node_path(None).unwrap_or_else(|| "?".to_string());
                self.marks.entry(path.clone()).or_insert(position);
                self.stack.push(match event {
                    Event::MappingStart(..) => Frame::Map { path, key: None },
                    _ => Frame::Seq { path, next: 0 },
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

impl Marks {
    pub(crate) fn of(text: &str) -> Marks {
        let mut collector = MarkCollector {
            stack: Vec::new(),
            marks: HashMap::new(),
        };
        // The text already parsed with serde_yaml_ng; a failure here only loses positions.
        let _ = Parser::new_from_str(text).load(&mut collector, false);
        Marks(collector.marks)
    }

    /// The position of `path`, or of its nearest ancestor that has one.
    pub(crate) fn find(&self, path: &str) -> (usize, usize) {
        let mut current = path.to_string();
        loop {
            if let Some(position) = self.0.get(&current) {
                return *position;
            }
            match current.rfind(['.', '[']) {
                Some(cut) => current.truncate(cut),
                None => return self.0.get("").copied().unwrap_or((1, 1)),
            }
        }
    }
}
