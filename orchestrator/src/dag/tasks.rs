//! The `tasks:` list: common keys, the operator's own fields (every other key of the task),
//! template syntax, and the dependency graph (duplicate ids, unknown upstream ids, cycles).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use petgraph::graph::{DiGraph, NodeIndex};
use serde_json::{Map, Value};
use updraft_operators::{OperatorKind, Registry};

use super::model::{RetryPolicy, Task, TriggerRule};
use super::parse::apply_overrides;
use super::reader::Reader;
use super::template::check_syntax;
use super::values::{check_id, suggest};
use super::yaml::{Entry, Kind, Pos};

/// Keys every task may have besides its operator's fields.
pub const TASK_KEYS: &[&str] = &[
    "id",
    "operator",
    "upstream",
    "trigger_rule",
    "owner",
    "retries",
    "retry_delay",
    "retry_exponential_backoff",
    "max_retry_delay",
    "execution_timeout",
];

pub const TRIGGER_RULES: &[(&str, TriggerRule)] = &[
    ("all_success", TriggerRule::AllSuccess),
    ("all_failed", TriggerRule::AllFailed),
    ("all_done", TriggerRule::AllDone),
    ("one_success", TriggerRule::OneSuccess),
    ("one_failed", TriggerRule::OneFailed),
    ("none_failed", TriggerRule::NoneFailed),
    (
        "none_failed_min_one_success",
        TriggerRule::NoneFailedMinOneSuccess,
    ),
    ("none_skipped", TriggerRule::NoneSkipped),
    ("always", TriggerRule::Always),
];

/// What `default_args` gives every task.
#[derive(Debug, Clone, Default)]
pub struct TaskDefaults {
    pub owner: String,
    pub retry: RetryPolicy,
    pub execution_timeout: Option<Duration>,
}

/// Where a task's parts are in the file, for graph errors.
struct Located {
    id_pos: Pos,
    upstream: Vec<(String, Pos)>,
}

pub fn build_tasks(
    reader: &mut Reader<'_>,
    entry: &Entry,
    defaults: &TaskDefaults,
    registry: &Registry,
) -> Vec<Task> {
    let Kind::Seq(items) = &entry.value.kind else {
        reader.type_error(entry, "", "a list of tasks");
        return Vec::new();
    };
    if items.is_empty() {
        reader.error(entry.value.pos, "`tasks`: a DAG needs at least one task");
    }
    let mut operator_fields = OperatorFields::default();
    let mut tasks = Vec::with_capacity(items.len());
    let mut located = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let Some(keys) = reader.mapping(item, &format!("task #{}", index + 1), &[]) else {
            continue;
        };
        let task_id = match keys.get("id") {
            Some(id_entry) => reader
                .text(id_entry, &format!("task #{}", index + 1))
                .inspect(|id| {
                    if let Err(message) = check_id(id) {
                        reader.error(id_entry.value.pos, format!("task id {message}"));
                    }
                }),
            None => {
                reader.error(
                    item.pos,
                    format!("task #{}: missing required key `id`", index + 1),
                );
                None
            }
        };
        let context = match &task_id {
            Some(id) => format!("task `{id}`"),
            None => format!("task #{}", index + 1),
        };
        let mut task = Task {
            task_id: task_id.clone().unwrap_or_default(),
            operator: String::new(),
            upstream: Vec::new(),
            trigger_rule: TriggerRule::default(),
            owner: defaults.owner.clone(),
            retry: defaults.retry.clone(),
            execution_timeout: defaults.execution_timeout,
            config: Value::Object(Map::new()),
        };
        let common: BTreeMap<&str, &Entry> = keys
            .iter()
            .filter(|(key, _)| TASK_KEYS.contains(key))
            .map(|(key, entry)| (*key, *entry))
            .collect();
        apply_overrides(
            reader,
            &common,
            &context,
            &mut task.owner,
            &mut task.retry,
            &mut task.execution_timeout,
        );
        let mut upstream = Vec::new();
        if let Some(up_entry) = common.get("upstream")
            && let Some(list) = reader.string_list(up_entry, &context)
        {
            upstream = list
                .into_iter()
                .map(|(id, pos)| (id.to_string(), pos))
                .collect();
        }
        task.upstream = upstream.iter().map(|(id, _)| id.clone()).collect();
        if let Some(rule_entry) = common.get("trigger_rule")
            && let Some(name) = reader.string(rule_entry, &context)
        {
            match TRIGGER_RULES.iter().find(|(rule, _)| *rule == name) {
                Some((_, rule)) => task.trigger_rule = *rule,
                None => {
                    let names: Vec<&str> = TRIGGER_RULES.iter().map(|(rule, _)| *rule).collect();
                    reader.error(
                        rule_entry.value.pos,
                        format!(
                            "{context}: unknown trigger rule `{name}`; expected one of: {}",
                            names.join(", ")
                        ),
                    );
                }
            }
        }
        let fields: Vec<&Entry> = keys
            .values()
            .filter(|entry| !TASK_KEYS.contains(&entry.key.as_str()))
            .copied()
            .collect();
        match common.get("operator") {
            Some(op_entry) => {
                if let Some(name) = reader.string(op_entry, &context) {
                    task.operator = name.to_string();
                    match registry.get(name) {
                        Some(operator) => {
                            let properties = operator_fields.properties(operator.as_ref());
                            task.config = check_operator_fields(
                                reader,
                                &context,
                                op_entry,
                                &fields,
                                operator.as_ref(),
                                properties,
                            );
                        }
                        None if registry.unavailable(name).is_some() => {
                            let reason = registry.unavailable(name).unwrap_or_default();
                            reader.error(
                                op_entry.value.pos,
                                format!("{context}: operator `{name}` is missing: its plugin did not load: {reason}"),
                            );
                        }
                        None => {
                            let names = registry.names();
                            let hint = suggest(name, &names)
                                .map(|name| format!("did you mean `{name}`? "))
                                .unwrap_or_default();
                            reader.error(
                                op_entry.value.pos,
                                format!("{context}: unknown operator `{name}`; {hint}known operators: {}", names.join(", ")),
                            );
                        }
                    }
                }
            }
            None => {
                reader.error(
                    item.pos,
                    format!("{context}: missing required key `operator`"),
                );
                // Without an operator its fields are unknown, but a typo of a task key
                // (`operatr`, `upstreams`) is still worth naming.
                for entry in fields
                    .iter()
                    .filter(|entry| suggest(&entry.key, TASK_KEYS).is_some())
                {
                    reader.unknown_key(entry, &context, TASK_KEYS);
                }
            }
        }
        check_templates(reader, &context, &fields);
        if task_id.is_some() {
            let id_pos = keys.get("id").map_or(item.pos, |entry| entry.value.pos);
            located.push((tasks.len(), Located { id_pos, upstream }));
            tasks.push(task);
        }
    }
    check_graph(reader, &tasks, &located);
    tasks
}

/// Operators' field names, from their config schemas (computed once per file).
#[derive(Default)]
struct OperatorFields {
    by_operator: HashMap<String, Option<Vec<String>>>,
}

impl OperatorFields {
    /// The field names, or `None` when the schema does not close the set of fields.
    fn properties(&mut self, operator: &dyn OperatorKind) -> Option<&[String]> {
        self.by_operator
            .entry(operator.name().to_string())
            .or_insert_with(|| {
                let schema = operator.config_schema().to_value();
                let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
                let names = schema
                    .get("properties")
                    .and_then(Value::as_object)
                    .map(|properties| properties.keys().cloned().collect())
                    .unwrap_or_default();
                closed.then_some(names)
            })
            .as_deref()
    }
}

/// Unknown fields (with a suggestion among task keys and operator fields), then the operator's
/// own validation of the unrendered config.
fn check_operator_fields(
    reader: &mut Reader<'_>,
    context: &str,
    op_entry: &Entry,
    fields: &[&Entry],
    operator: &dyn OperatorKind,
    properties: Option<&[String]>,
) -> Value {
    let config: Map<String, Value> = fields
        .iter()
        .map(|entry| (entry.key.clone(), entry.value.to_json()))
        .collect();
    let mut unknown = false;
    if let Some(properties) = properties {
        let mut known: Vec<&str> = TASK_KEYS.to_vec();
        known.extend(properties.iter().map(String::as_str));
        for entry in fields
            .iter()
            .filter(|entry| !properties.contains(&entry.key))
        {
            unknown = true;
            reader.unknown_key(
                entry,
                &format!("{context} (operator `{}`)", operator.name()),
                &known,
            );
        }
    }
    let config = Value::Object(config);
    if !unknown && let Err(message) = operator.validate(&config) {
        // Point at the field the message names, else at `operator:`.
        let pos = fields
            .iter()
            .find(|entry| message.contains(&format!("`{}`", entry.key)))
            .map_or(op_entry.value.pos, |entry| entry.key_pos);
        reader.error(
            pos,
            format!("{context}: invalid `{}` config: {message}", operator.name()),
        );
    }
    config
}

fn check_templates(reader: &mut Reader<'_>, context: &str, fields: &[&Entry]) {
    for entry in fields {
        let mut errors = Vec::new();
        entry.value.for_each_string(&mut |text, pos| {
            if let Err(message) = check_syntax(text) {
                errors.push((pos, message));
            }
        });
        for (pos, message) in errors {
            reader.error(
                pos,
                format!("{context}: template error in `{}`: {message}", entry.key),
            );
        }
    }
}

/// Duplicate ids, unknown upstream ids and cycles, each located.
fn check_graph(reader: &mut Reader<'_>, tasks: &[Task], located: &[(usize, Located)]) {
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(tasks.len());
    for (index, location) in located {
        let id = tasks[*index].task_id.as_str();
        if let Some(&earlier) = first.get(id) {
            let earlier_line = located
                .iter()
                .find(|(i, _)| *i == earlier)
                .map_or(0, |(_, l)| l.id_pos.line);
            reader.error(
                location.id_pos,
                format!("duplicate task id `{id}` (first defined at line {earlier_line})"),
            );
        } else {
            first.insert(id, *index);
        }
    }
    let ids: Vec<&str> = first.keys().copied().collect();
    let mut graph: DiGraph<usize, Pos> = DiGraph::with_capacity(tasks.len(), tasks.len());
    let nodes: HashMap<&str, NodeIndex> = first
        .iter()
        .map(|(id, index)| (*id, graph.add_node(*index)))
        .collect();
    for (index, location) in located {
        let id = tasks[*index].task_id.as_str();
        if first.get(id) != Some(index) {
            continue;
        }
        for (upstream, pos) in &location.upstream {
            match nodes.get(upstream.as_str()) {
                Some(&up) => {
                    graph.update_edge(up, nodes[id], *pos);
                }
                None => {
                    let hint = suggest(upstream, &ids)
                        .map(|name| format!("; did you mean `{name}`?"))
                        .unwrap_or_default();
                    reader.error(
                        *pos,
                        format!("task `{id}`: unknown upstream task `{upstream}`{hint}"),
                    );
                }
            }
        }
    }
    for component in petgraph::algo::tarjan_scc(&graph) {
        let is_cycle = component.len() > 1 || graph.contains_edge(component[0], component[0]);
        if !is_cycle {
            continue;
        }
        let (path, closing) = cycle_path(&graph, &component);
        let names: Vec<&str> = path
            .iter()
            .map(|node| tasks[graph[*node]].task_id.as_str())
            .collect();
        reader.error(
            closing,
            format!(
                "cycle in task dependencies: {} -> {}",
                names.join(" -> "),
                names[0]
            ),
        );
    }
}

/// One cycle through a strongly connected component, starting at its first task in file
/// order, and the position of the `upstream` entry that closes it.
fn cycle_path(graph: &DiGraph<usize, Pos>, component: &[NodeIndex]) -> (Vec<NodeIndex>, Pos) {
    let start = component
        .iter()
        .copied()
        .min_by_key(|node| graph[*node])
        .unwrap_or(component[0]);
    // Breadth-first search inside the component for the shortest way back to `start`.
    let mut previous: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for next in graph.neighbors(node) {
            if next == start {
                let mut path = vec![node];
                let mut cursor = node;
                while let Some(&before) = previous.get(&cursor) {
                    path.push(before);
                    cursor = before;
                }
                path.reverse();
                let closing = graph
                    .find_edge(node, start)
                    .map_or(Pos::default(), |edge| graph[edge]);
                return (path, closing);
            }
            if component.contains(&next) && !previous.contains_key(&next) && next != start {
                previous.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    (vec![start], Pos::default())
}
