//! The script parser on hostile input: it never panics, whatever the text; whatever it
//! accepts prints as canonical text that parses back to the same script; and whatever
//! it accepts can be put on a simulation and run without a panic (steps naming nodes
//! the topology does not have become violations, not crashes).

use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use shutter_sim::script::{Script, Step};
use shutter_sim::{Context, NodeId, Process, Sim, Topology};

/// Words of the grammar and near misses, for generated lines that get past the first
/// word often enough to reach the deeper checks.
const WORDS: &[&str] = &[
    "run",
    "at",
    "sends",
    "command",
    "snapshot",
    "from",
    "crash",
    "for",
    "losing",
    "disk",
    "partition",
    "|",
    "heal",
    "tick",
    "n0",
    "n1",
    "2",
    "n3",
    "n7",
    "n",
    "n-1",
    "4294967296",
    "5",
    "0",
    "18446744073709551616",
    "5ms",
    "1.5s",
    "300us",
    "0s",
    "1.5us",
    "1000000s",
    "999999s",
    "10",
    "#",
    "x",
    "|n1",
    "n0|",
    "",
    "\t",
    "µs",
    "1e3ms",
    "+3",
];

/// A line of 0-6 words from [`WORDS`].
fn soup() -> impl Strategy<Value = String> {
    let line =
        proptest::collection::vec(proptest::sample::select(WORDS), 0..7).prop_map(|w| w.join(" "));
    proptest::collection::vec(line, 0..12).prop_map(|l| l.join("\n"))
}

/// One of the golden scripts with bytes cut out, repeated or replaced: valid text one
/// small edit away from invalid.
fn mutated() -> impl Strategy<Value = String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts");
    let files: Vec<String> = ["ring3", "grid2x2", "crash"]
        .iter()
        .map(|n| std::fs::read_to_string(dir.join(format!("{n}.txt"))).unwrap())
        .collect();
    let edit = (
        0usize..4,
        any::<prop::sample::Index>(),
        0usize..12,
        any::<u8>(),
    );
    (
        proptest::sample::select(files),
        proptest::collection::vec(edit, 1..6),
    )
        .prop_map(|(text, edits)| {
            let mut bytes = text.into_bytes();
            for (kind, at, len, byte) in edits {
                let i = at.index(bytes.len() + 1);
                let end = (i + len).min(bytes.len());
                match kind {
                    0 => drop(bytes.drain(i..end)),
                    1 => {
                        let copy = bytes[i..end].to_vec();
                        bytes.splice(i..i, copy);
                    }
                    2 => bytes.insert(i, byte),
                    _ if i < bytes.len() => bytes[i] = byte,
                    _ => {}
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
}

/// Scripts built from random steps, the invalid ones skipped ([`Script::push`] refuses
/// them), over nodes 0-4 of which the test topology has 0-3.
fn built() -> impl Strategy<Value = Script> {
    let node = (0u32..5).prop_map(NodeId);
    let nodes = proptest::collection::vec(node.clone(), 0..3);
    let time = (0u64..150).prop_map(Duration::from_millis);
    let step = prop_oneof![
        time.clone().prop_map(Step::Run),
        time.clone().prop_map(|t| Step::At(t * 2)),
        (node.clone(), node.clone(), 0u64..20).prop_map(|(from, to, n)| Step::Send { from, to, n }),
        (node.clone(), "[a-z #]{0,8}").prop_map(|(node, text)| Step::Command { node, text }),
        node.clone().prop_map(Step::Snapshot),
        (node.clone(), time, any::<bool>()).prop_map(|(node, down, lose_disk)| Step::Crash {
            node,
            down,
            lose_disk
        }),
        (nodes.clone(), nodes).prop_map(|(side_a, side_b)| Step::Partition { side_a, side_b }),
        Just(Step::Heal),
        Just(Step::Tick),
    ];
    proptest::collection::vec(step, 0..24).prop_map(|steps| {
        let mut script = Script::new();
        for step in steps {
            let _ = script.push(step);
        }
        script
    })
}

/// Parses `text`; if it is a script, checks the round trip and returns it.
fn parse_checked(text: &str) -> Option<Script> {
    match Script::parse(text) {
        Ok(script) => {
            let again = Script::parse(&script.to_string())
                .unwrap_or_else(|e| panic!("canonical text refused: {e}\n{script}"));
            assert_eq!(again, script, "the canonical text is another script");
            Some(script)
        }
        Err(e) => {
            // The error names a line of the input, as written.
            assert!(e.line >= 1, "{e}");
            assert_eq!(text.lines().nth(e.line - 1), Some(e.text.as_str()), "{e}");
            None
        }
    }
}

/// Does nothing much: the point is the simulator taking whatever the script says.
struct Echo;
#[derive(Serialize, Deserialize)]
struct Nothing;

impl Process for Echo {
    type State = Nothing;
    fn on_command(&mut self, ctx: &mut Context, command: &[u8]) {
        if let Some((to, _)) = shutter_sim::script::parse_send(command) {
            ctx.send(to, command.to_vec());
        }
    }
    fn on_message(&mut self, _: &mut Context, _: NodeId, _: &[u8]) {}
    fn snapshot(&self) -> Nothing {
        Nothing
    }
    fn restore(&mut self, _: Nothing) {}
}

proptest! {
    #[test]
    fn any_text_parses_or_says_why(text in any::<String>()) {
        parse_checked(&text);
    }

    #[test]
    fn word_soup_parses_or_says_why(text in soup()) {
        parse_checked(&text);
    }

    #[test]
    fn mutated_scripts_parse_or_say_why(text in mutated()) {
        parse_checked(&text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Accepted scripts run. Long ones are cut short (only the parser is under test
    /// here, not a simulation of days), and the step bound keeps never-healed
    /// partitions cheap.
    #[test]
    fn accepted_scripts_run(
        script in prop_oneof![
            built(),
            mutated().prop_filter_map("refused", |t| parse_checked(&t)),
        ],
    ) {
        prop_assert_eq!(parse_checked(&script.to_string()), Some(script.clone()));
        if script.duration() <= Duration::from_secs(1) {
            let _ = Sim::new(Topology::grid(2, 2), |_| Echo)
                .script(&script)
                .max_steps(200_000)
                .run_for(script.duration() + Duration::from_millis(20));
        }
    }
}
