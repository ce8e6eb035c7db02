//! The chaos suite: faults injected into a running system, each scenario printing one row of a
//! table (what was injected, under what load, the outcome and its figures) and failing on any
//! violation of what Updraft promises. Run through `scripts/chaos [--full] [SCENARIO...]`.

mod processes;
mod scenarios;
mod stream_rig;
mod task_runs;

use std::time::Instant;

/// One row of the table.
pub struct Row {
    pub scenario: &'static str,
    pub injected: String,
    pub load: String,
    pub outcome: String,
    pub holds: bool,
    pub seconds: f64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut full = false;
    let mut chosen = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--full" => full = true,
            name => chosen.push(name.to_string()),
        }
    }
    let known = scenarios::NAMES;
    if let Some(unknown) = chosen.iter().find(|name| !known.contains(&name.as_str())) {
        eprintln!(
            "chaos: unknown scenario `{unknown}` (one of {})",
            known.join(", ")
        );
        std::process::exit(2);
    }
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |since| since.as_secs())
        });
    let size = if full { "full" } else { "short" };
    println!("chaos: {size} sizes, seed {seed} (CHAOS_SEED={seed} replays the kill order)\n");
    println!("| scenario | injected | load | outcome | holds | seconds |");
    println!("|---|---|---|---|---|---|");
    let mut failed = 0;
    for name in known {
        if !chosen.is_empty() && !chosen.iter().any(|chosen| chosen == name) {
            continue;
        }
        let started = Instant::now();
        let mut row = scenarios::run(name, full, seed).await;
        row.seconds = started.elapsed().as_secs_f64();
        failed += usize::from(!row.holds);
        println!(
            "| {} | {} | {} | {} | {} | {:.0} |",
            row.scenario,
            row.injected,
            row.load,
            row.outcome,
            if row.holds { "yes" } else { "**NO**" },
            row.seconds
        );
    }
    if failed > 0 {
        eprintln!("\nchaos: {failed} scenario(s) violated a promise");
        std::process::exit(1);
    }
}
