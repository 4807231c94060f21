use super::check::replicas_of;
use super::*;
use crate::load::slo::Window;

fn shop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("scenarios")
}

const BASE: &str = r#"
name = "t"
description = "Hypothesis: it holds."
seed = 3
[cluster]
replicas = { catalog = 2 }
[load]
schedule = { mode = "constant", rate = 5, duration = "30s" }
[load.workload]
[[load.workload.flow]]
name = "browse"
[[load.workload.flow.step]]
path = "/api/v1/products/1"
"#;

fn parse(extra: &str) -> Result<Scenario, ScenarioError> {
    Scenario::parse(&format!("{BASE}{extra}"), &shop_dir().join("t.toml"))
}

#[test]
fn a_full_timeline_parses() {
    let s = parse(
        r#"
[[fault]]
edge = "orders->payments"
toxic = "latency"
attributes = { latency = "300ms" }
at = "5s"
for = "10s"
[[fault]]
node = "catalog-1"
op = "kill"
at = "2s"
for = "3s"
[[slo]]
threshold = "p95 < 1s"
during = "faults"
[[slo]]
threshold = "availability >= 99%"
during = "recovery"
[[slo]]
threshold = "p99 < 2s"
during = "f1"
"#,
    )
    .unwrap();
    assert_eq!(s.slos()[2].window, Window { start: Duration::from_secs(5), end: Some(Duration::from_secs(15)) });
    assert_eq!(s.faults.len(), 2);
    assert_eq!(s.faults[0].action, FaultAction::Node(NodeOp::Kill), "sorted by start");
    assert_eq!(s.faults_end(), Duration::from_secs(15));
    assert_eq!(s.slos()[0].window, Window { start: Duration::from_secs(2), end: Some(Duration::from_secs(15)) });
    assert_eq!(s.slos()[1].window.start, Duration::from_secs(15));
    assert_eq!(s.invariants.len(), 4);
    assert_eq!(replicas_of(&s.cluster, "catalog"), 2);
    let FaultAction::Toxics(t) = &s.faults[1].action else { panic!() };
    assert_eq!(t[0].name, "gauntlet_f1_latency_downstream");
}

#[test]
fn mistakes_point_at_their_place() {
    let cases = [
        ("[[fault]]\nedge = \"orders->nowhere\"\ntoxic = \"latency\"\nat = \"1s\"\nfor = \"1s\"\n", 15, "no edge"),
        ("[[fault]]\nnode = \"catalog-2\"\nop = \"kill\"\nat = \"1s\"\nfor = \"1s\"\n", 15, "replicas 0..1"),
        (
            "[[fault]]\nnode = \"catalog-0\"\nop = \"explode\"\nat = \"1s\"\nfor = \"1s\"\n",
            16,
            "unknown node operation",
        ),
        ("[[fault]]\nnode = \"catalog-0\"\nop = \"kill\"\nat = \"soon\"\nfor = \"1s\"\n", 17, "not a duration"),
        ("[[slo]]\nthreshold = \"p95 < lots\"\n", 15, "not a duration"),
        ("invariants = [\"fast\"]\n", 17, "unknown invariant"),
    ];
    for (extra, line, what) in cases {
        // Top-level keys must come before the tables of BASE.
        let text = if extra.starts_with("invariants") { format!("{extra}{BASE}") } else { format!("{BASE}{extra}") };
        let e = Scenario::parse(&text, &shop_dir().join("t.toml")).unwrap_err();
        let line = if extra.starts_with("invariants") { 1 } else { line };
        assert_eq!(e.line, line, "{e}");
        assert!(e.message.contains(what), "{e}");
    }
}

#[test]
fn faults_must_end_before_the_recovery_phase() {
    let e = parse("[[fault]]\nnode = \"catalog-0\"\nop = \"pause\"\nat = \"20s\"\nfor = \"8s\"\n").unwrap_err();
    assert!(e.message.contains("lengthen the schedule"), "{e}");
}

#[test]
fn windows_tied_to_faults_move_to_their_actual_times() {
    let s = parse(
        r#"
[[fault]]
edge = "orders->payments"
toxic = "latency"
attributes = { latency = "300ms" }
at = "5s"
for = "10s"
[[fault]]
node = "catalog-1"
op = "kill"
at = "2s"
for = "3s"
[[slo]]
threshold = "p95 < 1s"
during = "faults"
[[slo]]
threshold = "paid_share >= 95%"
during = "recovery"
[[slo]]
threshold = "p99 < 2s"
during = "f1"
[[slo]]
threshold = "p99 < 2s"
during = "3s..4s"
"#,
    )
    .unwrap();
    let secs = |ms: u64| Duration::from_millis(ms);
    // Timeline order: the kill (index 0) then the latency (index 1). The kill's node
    // came back 1.5s late; the latency went on 200ms late and came off 300ms late.
    let actual = [
        ActualTimes { applied: Some(secs(2_100)), removed: Some(secs(6_500)) },
        ActualTimes { applied: Some(secs(5_200)), removed: Some(secs(15_300)) },
    ];
    let run = s.slos_as_run(&actual);
    assert_eq!(run[0].window, Window { start: secs(2_100), end: Some(secs(15_300)) });
    assert_eq!(run[1].window, Window { start: secs(15_300), end: None });
    assert_eq!(run[2].window, Window { start: secs(5_200), end: Some(secs(15_300)) });
    assert_eq!(run[3].window, s.slos()[3].window, "a window of stated times does not move");
    let planned = s.slos_as_run(&[ActualTimes::default(), ActualTimes::default()]);
    assert_eq!(
        planned.iter().map(|s| s.window).collect::<Vec<_>>(),
        s.slos().iter().map(|s| s.window).collect::<Vec<_>>()
    );
}

#[test]
fn paid_share_is_over_every_order() {
    let e = parse("[[slo]]\nthreshold = \"paid_share >= 95%\"\nflow = \"browse\"\n").unwrap_err();
    assert!(e.message.contains("drop `flow` and `step`"), "{e}");
}
