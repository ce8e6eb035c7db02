//! The task graph as SVG: layers by longest path from the roots, nodes in file order per layer.

use std::collections::HashMap;
use std::fmt::Write;

use super::escape_html;

/// One node: task id, its upstream ids, its state in the latest run, and a link.
pub struct GraphNode {
    pub task_id: String,
    pub upstream: Vec<String>,
    pub state: String,
    pub href: Option<String>,
}

const NODE_W: i64 = 170;
const NODE_H: i64 = 34;
const GAP_X: i64 = 60;
const GAP_Y: i64 = 18;
const PAD: i64 = 10;

/// Layer of each node = length of the longest path from a root. Cycles cannot occur (the parser
/// refuses them); an unknown upstream id is ignored.
pub fn layers(nodes: &[GraphNode]) -> Vec<usize> {
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.task_id.as_str(), i))
        .collect();
    let mut layer = vec![0usize; nodes.len()];
    // Relax at most n times: enough for any DAG, and it ends even on bad data.
    for _ in 0..nodes.len() {
        let mut changed = false;
        for (i, node) in nodes.iter().enumerate() {
            for up in &node.upstream {
                if let Some(&u) = index.get(up.as_str())
                    && layer[u] + 1 > layer[i]
                {
                    layer[i] = layer[u] + 1;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    layer
}

pub fn render_svg(nodes: &[GraphNode]) -> String {
    if nodes.is_empty() {
        return "<p class=\"empty\">No tasks.</p>".into();
    }
    let layer = layers(nodes);
    let mut row_in_layer = vec![0i64; nodes.len()];
    let mut counts: HashMap<usize, i64> = HashMap::new();
    for (i, l) in layer.iter().enumerate() {
        let count = counts.entry(*l).or_default();
        row_in_layer[i] = *count;
        *count += 1;
    }
    let max_layer = layer.iter().copied().max().unwrap_or(0) as i64;
    let max_rows = counts.values().copied().max().unwrap_or(1);
    let width = PAD * 2 + (max_layer + 1) * NODE_W + max_layer * GAP_X;
    let height = PAD * 2 + max_rows * NODE_H + (max_rows - 1) * GAP_Y;
    let position = |i: usize| {
        (
            PAD + layer[i] as i64 * (NODE_W + GAP_X),
            PAD + row_in_layer[i] * (NODE_H + GAP_Y),
        )
    };
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.task_id.as_str(), i))
        .collect();
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"task graph\">"
    );
    for (i, node) in nodes.iter().enumerate() {
        for up in &node.upstream {
            let Some(&u) = index.get(up.as_str()) else {
                continue;
            };
            let (x1, y1) = position(u);
            let (x2, y2) = position(i);
            let (sx, sy, ex, ey) = (x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2);
            let mid = (sx + ex) / 2;
            let _ = write!(
                svg,
                "<path class=\"edge\" d=\"M{sx},{sy} C{mid},{sy} {mid},{ey} {ex},{ey}\"/>"
            );
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        let (x, y) = position(i);
        let id = escape_html(&node.task_id);
        let label = if node.task_id.chars().count() > 22 {
            escape_html(&format!(
                "{}…",
                node.task_id.chars().take(21).collect::<String>()
            ))
        } else {
            id.clone()
        };
        let state = escape_html(&node.state);
        let body = format!(
            "<g class=\"node st-{state}\" data-task=\"{id}\"><title>{id}: {state}</title>\
             <rect x=\"{x}\" y=\"{y}\" width=\"{NODE_W}\" height=\"{NODE_H}\" rx=\"4\"/>\
             <text x=\"{}\" y=\"{}\">{label}</text></g>",
            x + 8,
            y + NODE_H / 2 + 4
        );
        match &node.href {
            Some(href) => {
                let _ = write!(svg, "<a href=\"{}\">{body}</a>", escape_html(href));
            }
            None => svg.push_str(&body),
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, up: &[&str]) -> GraphNode {
        GraphNode {
            task_id: id.into(),
            upstream: up.iter().map(|s| s.to_string()).collect(),
            state: "none".into(),
            href: None,
        }
    }

    #[test]
    fn layers_follow_the_longest_path() {
        // a → b → d, a → d, c alone: d sits after b, not beside it.
        let nodes = vec![
            node("a", &[]),
            node("b", &["a"]),
            node("c", &[]),
            node("d", &["a", "b"]),
        ];
        assert_eq!(layers(&nodes), vec![0, 1, 0, 2]);
        let svg = render_svg(&nodes);
        assert_eq!(svg.matches("class=\"edge\"").count(), 3);
        assert!(svg.contains("data-task=\"d\""));
    }

    #[test]
    fn ids_are_escaped() {
        let svg = render_svg(&[node("<script>", &[])]);
        assert!(!svg.contains("<script>"));
    }
}
