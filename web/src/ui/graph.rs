//! The task graph as SVG, laid out left to right in layers (Sugiyama's method, by the
//! `rust-sugiyama` crate: longest-path layers refined by network simplex, crossings reduced by
//! barycenters and transposition, Brandes-Köpf coordinates). A layer wider than
//! [`MAX_ROWS`] tasks (a fan-out) wraps into several columns, so a 100-wide fan-out fits a
//! screen.

use std::collections::HashMap;
use std::fmt::Write;

use rust_sugiyama::configure::Config;

use super::escape_html;

/// One node: task id, its upstream ids, its state in the latest run, and a link.
pub struct GraphNode {
    pub task_id: String,
    pub upstream: Vec<String>,
    pub state: String,
    pub href: Option<String>,
}

const NODE_W: i64 = 150;
const NODE_H: i64 = 26;
/// Between layers (edges run here), and between the columns of one wrapped layer.
const GAP_X: i64 = 44;
const GAP_WRAP: i64 = 14;
const GAP_Y: i64 = 10;
const PAD: i64 = 10;
/// Tasks a layer shows in one column before it wraps into another.
pub const MAX_ROWS: usize = 20;
/// Above this many tasks the layout skips transposition (quadratic in a layer's width).
const TRANSPOSE_UP_TO: usize = 300;

/// Where each node goes: its layer, then its place in the layer (top to bottom), from the
/// layout library; nodes of separate components stacked. `(layer, position)` per node.
pub fn layers(nodes: &[GraphNode]) -> Vec<(usize, f64)> {
    let index: HashMap<&str, u32> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.task_id.as_str(), i as u32))
        .collect();
    let vertices: Vec<(u32, (f64, f64))> = (0..nodes.len() as u32)
        // The library lays out top to bottom: a node's width there is its height here.
        .map(|i| (i, (NODE_H as f64, NODE_W as f64)))
        .collect();
    let mut edges: Vec<(u32, u32)> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for up in &node.upstream {
            // An unknown upstream id is ignored (the parser refuses them anyway).
            if let Some(&u) = index.get(up.as_str()) {
                edges.push((u, i as u32));
            }
        }
    }
    let config = Config {
        vertex_spacing: GAP_Y as f64,
        transpose: nodes.len() <= TRANSPOSE_UP_TO,
        ..Config::default()
    };
    let mut placed = vec![(0usize, 0.0f64); nodes.len()];
    let mut offset = 0.0;
    for (component, _, _) in rust_sugiyama::from_vertices_and_edges(&vertices, &edges, &config) {
        // Ranks are the distinct vertical coordinates, top first.
        let mut ranks: Vec<f64> = component.iter().map(|(_, (_, y))| *y).collect();
        ranks.sort_by(f64::total_cmp);
        ranks.dedup();
        let mut height: f64 = 0.0;
        for (id, (x, y)) in &component {
            let layer = ranks.partition_point(|rank| rank < y);
            if let Some(slot) = placed.get_mut(*id) {
                *slot = (layer, offset + x);
            }
            height = height.max(*x);
        }
        offset += height + (NODE_H + GAP_Y) as f64 * 1.5;
    }
    placed
}

/// Where the nodes are drawn.
struct Drawing {
    /// Each node's top-left corner.
    position: Vec<(i64, i64)>,
    /// The left and right ends of each node's layer (several columns when it wraps).
    span: Vec<(i64, i64)>,
    width: i64,
    height: i64,
}

/// Pixel positions (top-left) of each node, and the drawing's size. Without a wrapped layer the
/// library's coordinates are kept; with one, every layer is a centred list in the library's
/// order, wrapped every [`MAX_ROWS`].
fn positions(nodes: &[GraphNode]) -> Drawing {
    let placed = layers(nodes);
    let layer_count = placed.iter().map(|(layer, _)| layer + 1).max().unwrap_or(0);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); layer_count];
    for (i, (layer, _)) in placed.iter().enumerate() {
        members[*layer].push(i);
    }
    for layer in &mut members {
        layer.sort_by(|a, b| placed[*a].1.total_cmp(&placed[*b].1));
    }
    let columns: Vec<i64> = members
        .iter()
        .map(|layer| layer.len().div_ceil(MAX_ROWS).max(1) as i64)
        .collect();
    let mut layer_x = Vec::with_capacity(layer_count);
    let mut x = PAD;
    for count in &columns {
        layer_x.push(x);
        x += count * NODE_W + (count - 1) * GAP_WRAP + GAP_X;
    }
    let width = (x - GAP_X + PAD).max(NODE_W + 2 * PAD);
    let row = NODE_H + GAP_Y;
    let mut position = vec![(PAD, PAD); nodes.len()];
    if columns.iter().all(|count| *count == 1) {
        let top = placed.iter().map(|(_, y)| *y).fold(f64::INFINITY, f64::min);
        for (i, (layer, y)) in placed.iter().enumerate() {
            position[i] = (layer_x[*layer], PAD + (y - top).round() as i64);
        }
    } else {
        let tallest = members
            .iter()
            .map(|m| m.len().min(MAX_ROWS))
            .max()
            .unwrap_or(1) as i64;
        for (layer, ids) in members.iter().enumerate() {
            let rows = ids.len().min(MAX_ROWS) as i64;
            let top = PAD + (tallest - rows) * row / 2;
            for (k, id) in ids.iter().enumerate() {
                let (column, line) = ((k / MAX_ROWS) as i64, (k % MAX_ROWS) as i64);
                position[*id] = (
                    layer_x[layer] + column * (NODE_W + GAP_WRAP),
                    top + line * row,
                );
            }
        }
    }
    let height = position
        .iter()
        .map(|(_, y)| y + NODE_H + PAD)
        .max()
        .unwrap_or(2 * PAD);
    let span = placed
        .iter()
        .map(|(layer, _)| {
            let columns = columns[*layer];
            let left = layer_x[*layer];
            (left, left + columns * NODE_W + (columns - 1) * GAP_WRAP)
        })
        .collect();
    Drawing {
        position,
        span,
        width,
        height,
    }
}

pub fn render_svg(nodes: &[GraphNode]) -> String {
    if nodes.is_empty() {
        return "<p class=\"empty\">No tasks.</p>".into();
    }
    let Drawing {
        position: placed,
        span,
        width,
        height,
    } = positions(nodes);
    let position = |i: usize| placed[i];
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.task_id.as_str(), i))
        .collect();
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"group\" aria-label=\"task graph\">"
    );
    for (i, node) in nodes.iter().enumerate() {
        for up in &node.upstream {
            let Some(&u) = index.get(up.as_str()) else {
                continue;
            };
            let (x1, y1) = position(u);
            let (x2, y2) = position(i);
            // Across a wrapped layer an edge runs along its node's row, behind the other
            // columns, to the layer's edge: rows read as lines, not as a tangle.
            let (sy, ey) = (y1 + NODE_H / 2, y2 + NODE_H / 2);
            let (from, sx) = (x1 + NODE_W, span[u].1);
            let (ex, to) = (span[i].0, x2);
            let mid = (sx + ex) / 2;
            let _ = write!(
                svg,
                "<path class=\"edge\" d=\"M{from},{sy} L{sx},{sy} C{mid},{sy} {mid},{ey} {ex},{ey} L{to},{ey}\"/>"
            );
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        let (x, y) = position(i);
        let id = escape_html(&node.task_id);
        let label = if node.task_id.chars().count() > 20 {
            escape_html(&format!(
                "{}…",
                node.task_id.chars().take(19).collect::<String>()
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
        let layer: Vec<usize> = layers(&nodes).iter().map(|(layer, _)| *layer).collect();
        assert_eq!(layer, vec![0, 1, 0, 2]);
        let svg = render_svg(&nodes);
        assert_eq!(svg.matches("class=\"edge\"").count(), 3);
        assert!(svg.contains("data-task=\"d\""));
    }

    fn overlap(a: (i64, i64), b: (i64, i64)) -> bool {
        (a.0 - b.0).abs() < NODE_W && (a.1 - b.1).abs() < NODE_H
    }

    #[test]
    fn a_hundred_wide_fan_out_wraps_into_columns_that_fit_a_screen() {
        let mut nodes = vec![node("start", &[])];
        for i in 0..100 {
            nodes.push(node(&format!("fan_{i}"), &["start"]));
        }
        let fan: Vec<String> = (0..100).map(|i| format!("fan_{i}")).collect();
        let fan: Vec<&str> = fan.iter().map(String::as_str).collect();
        nodes.push(node("join", &fan));
        let Drawing {
            position: placed,
            width,
            height,
            ..
        } = positions(&nodes);
        assert!(width <= 1280 && height <= 800, "{width}×{height}");
        for (i, a) in placed.iter().enumerate() {
            for b in &placed[i + 1..] {
                assert!(!overlap(*a, *b), "{a:?} {b:?}");
            }
        }
        // The join comes after every fan task.
        let join = placed[101].0;
        assert!(placed[1..101].iter().all(|(x, _)| *x + NODE_W < join));
    }

    #[test]
    fn a_chain_is_one_straight_row() {
        let nodes = vec![node("a", &[]), node("b", &["a"]), node("c", &["b"])];
        let placed = positions(&nodes).position;
        assert!(placed.iter().all(|(_, y)| *y == placed[0].1), "{placed:?}");
        assert!(placed[0].0 < placed[1].0 && placed[1].0 < placed[2].0);
    }

    #[test]
    fn ids_are_escaped() {
        let svg = render_svg(&[node("<script>", &[])]);
        assert!(!svg.contains("<script>"));
    }
}
