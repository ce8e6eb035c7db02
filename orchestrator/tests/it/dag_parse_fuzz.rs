//! The parser never panics, whatever the input: arbitrary text, and valid files with random
//! edits (the inputs most likely to reach the deeper checks).

use proptest::prelude::*;
use updraft_orchestrator::dag::parse_dag;

const VALID: &str = include_str!("../../testdata/valid/full.yaml");
const SEED_DAG: &str = include_str!("../../../dags/user_automation.yaml");

/// Characters that change YAML structure or template syntax.
const SIGNIFICANT: &[&str] = &[
    ":", "-", " ", "\n", "[", "]", "{", "}", "{{", "}}", "{%", "'", "\"", "&a", "*a", "#",
    "!!str ", "|", ">", ",", "?", "\t", "ü",
];

fn edited(base: &'static str) -> impl Strategy<Value = String> {
    let edits = prop::collection::vec(
        (
            any::<prop::sample::Index>(),
            0..3u8,
            prop::sample::select(SIGNIFICANT),
        ),
        1..8,
    );
    edits.prop_map(move |edits| {
        let mut text = base.to_string();
        for (at, kind, insert) in edits {
            let mut index = at.index(text.len() + 1);
            while !text.is_char_boundary(index) {
                index -= 1;
            }
            match kind {
                0 => text.insert_str(index, insert),
                1 => {
                    let end = (index + 3).min(text.len());
                    if text.is_char_boundary(end) {
                        text.replace_range(index..end, "");
                    }
                }
                _ => text.insert_str(index, &insert.repeat(4)),
            }
        }
        text
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(source in ".{0,400}") {
        let _ = parse_dag("fuzz.yaml", &source, &updraft_operators::builtin_registry());
    }

    #[test]
    fn edited_valid_files_never_panic(source in prop_oneof![edited(VALID), edited(SEED_DAG)]) {
        let result = parse_dag("fuzz.yaml", &source, &updraft_operators::builtin_registry());
        if let Err(diagnostics) = result {
            prop_assert!(!diagnostics.is_empty());
            for diagnostic in diagnostics {
                prop_assert!(diagnostic.line >= 1 && diagnostic.column >= 1, "{diagnostic}");
            }
        }
    }
}
