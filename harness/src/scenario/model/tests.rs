use super::check::replicas_of;
use super::*;
use crate::load::slo::Window;

/// The test clusters' folder: `cluster.toml` (web -> api -> db, two db replicas, with
/// a checks file) and `bare.toml` (no checks).
fn test_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/scenario/model/testdata")
}

const BASE: &str = r#"
name = "t"
description = "Hypothesis: it holds."
seed = 3
[cluster]
file = "cluster.toml"
[load]
schedule = { mode = "constant", rate = 5, duration = "30s" }
[load.workload]
[[load.workload.flow]]
name = "browse"
[[load.workload.flow.step]]
path = "/items/1"
"#;

fn parse(extra: &str) -> Result<Scenario, ScenarioError> {
    Scenario::parse(&format!("{BASE}{extra}"), &test_dir().join("t.toml"))
}

#[test]
fn a_full_timeline_parses() {
    let s = parse(
        r#"
[[fault]]
edge = "api->db"
toxic = "latency"
attributes = { latency = "300ms" }
at = "5s"
for = "10s"
[[fault]]
node = "db-1"
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
    assert!(s.declared.is_empty() && s.final_reads.is_empty(), "a file that declares no invariant runs none");
    assert_eq!(replicas_of(&s.cluster, "db"), 2);
    let FaultAction::Toxics(t) = &s.faults[1].action else { panic!() };
    assert_eq!(t[0].name, "gauntlet_f1_latency_downstream");
}

#[test]
fn mistakes_point_at_their_place() {
    let cases = [
        ("[[fault]]\nedge = \"api->nowhere\"\ntoxic = \"latency\"\nat = \"1s\"\nfor = \"1s\"\n", 15, "no edge"),
        ("[[fault]]\nnode = \"db-2\"\nop = \"kill\"\nat = \"1s\"\nfor = \"1s\"\n", 15, "replicas 0..1"),
        (
            "[[fault]]\nnode = \"db-0\"\nop = \"explode\"\nat = \"1s\"\nfor = \"1s\"\n",
            16,
            "unknown node operation",
        ),
        ("[[fault]]\nnode = \"db-0\"\nop = \"kill\"\nat = \"soon\"\nfor = \"1s\"\n", 17, "not a duration"),
        (
            "[[fault]]\nedge = \"api->db\"\ntoxic = \"loss\"\nattributes = { probability = 1.5 }\nat = \"1s\"\nfor = \"1s\"\n",
            15,
            "attributes.probability must be between 0 and 1",
        ),
        (
            "[[fault]]\nedge = \"api->db\"\ntoxic = \"corrupt\"\nattributes = { spare_head = \"yes\" }\nat = \"1s\"\nfor = \"1s\"\n",
            15,
            "attributes.spare_head must be a boolean",
        ),
        ("[[slo]]\nthreshold = \"p95 < lots\"\n", 15, "not a duration"),
        ("invariants = [\"fast\"]\n", 17, "unknown invariant"),
    ];
    for (extra, line, what) in cases {
        // Top-level keys must come before the tables of BASE.
        let text = if extra.starts_with("invariants") { format!("{extra}{BASE}") } else { format!("{BASE}{extra}") };
        let e = Scenario::parse(&text, &test_dir().join("t.toml")).unwrap_err();
        let line = if extra.starts_with("invariants") { 1 } else { line };
        assert_eq!(e.line, line, "{e}");
        assert!(e.message.contains(what), "{e}");
    }
}

#[test]
fn faults_must_end_before_the_recovery_phase() {
    let e = parse("[[fault]]\nnode = \"db-0\"\nop = \"pause\"\nat = \"20s\"\nfor = \"8s\"\n").unwrap_err();
    assert!(e.message.contains("lengthen the schedule"), "{e}");
}

#[test]
fn windows_tied_to_faults_move_to_their_actual_times() {
    let s = parse(
        r#"
[[fault]]
edge = "api->db"
toxic = "latency"
attributes = { latency = "300ms" }
at = "5s"
for = "10s"
[[fault]]
node = "db-1"
op = "kill"
at = "2s"
for = "3s"
[[slo]]
threshold = "p95 < 1s"
during = "faults"
[[slo]]
threshold = "availability >= 95%"
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
fn ok_share_is_over_every_operation_of_its_f() {
    let e = parse(&format!("{RECORDING}[[slo]]\nthreshold = \"ok_share(add) >= 95%\"\nflow = \"add\"\n")).unwrap_err();
    assert!(e.message.contains("drop `flow` and `step`"), "{e}");
}

/// BASE with a flow whose steps record `add` and `read` operations.
const RECORDING: &str = r#"
[[load.workload.flow]]
name = "add"
[[load.workload.flow.step]]
path = "/SADD/items/{{iteration}}"
op = { f = "add", value = "{{iteration}}" }
"#;

fn parse_declared(extra: &str) -> Result<Scenario, ScenarioError> {
    parse(&format!("{RECORDING}{extra}"))
}

#[test]
fn declared_invariants_and_final_reads_parse_into_checkers_and_requests() {
    let s = parse_declared(
        r#"
[[final_read]]
path = "/SMEMBERS/items"
result = "/SMEMBERS"
[[invariant]]
checker = "set"
[[invariant]]
name = "mine"
command = ["python3", "check.py"]
timeout = "5s"
"#,
    )
    .unwrap();
    assert_eq!(s.declared.len(), 2);
    assert_eq!(s.declared[0].name, "set");
    assert!(
        matches!(&s.declared[1].check, InvariantCheck::External { timeout, .. } if *timeout == Duration::from_secs(5))
    );
    assert_eq!(s.final_reads[0].f, "read");
    assert_eq!(s.final_reads[0].result, "/SMEMBERS");
}

#[test]
fn mistakes_in_declared_invariants_point_at_their_place_and_say_what_to_do() {
    let line_of = |text: &str, needle: &str| {
        let full = format!("{BASE}{RECORDING}{text}");
        full[..full.find(needle).unwrap()].matches('\n').count() + 1
    };
    let cases = [
        ("[[invariant]]\nchecker = \"sett\"\n", "\"sett\"", "unknown checker `sett`; the library has set, set-full"),
        ("[[invariant]]\nchecker = \"counter\"\n", "[[invariant]]", "with `f = \"read\"` but no workload step"),
        ("[[invariant]]\nchecker = \"set\"\ntotal = 3\n", "total", "`total` is not a parameter of the `set` checker"),
        ("[[invariant]]\nchecker = \"set\"\ncommand = [\"x\"]\n", "command", "not both"),
        ("[[invariant]]\nname = \"x\"\n", "[[invariant]]", "names a `checker`"),
        ("[[invariant]]\ncommand = [\"x\"]\ntimeout = \"2h\"\n", "\"2h\"", "at most 1h"),
        ("[[final_read]]\npath = \"/x\"\nresult = \"SMEMBERS\"\n", "\"SMEMBERS\"", "is not a JSON pointer"),
        (
            "[[final_read]]\npath = \"/x\"\nservice = \"nowhere\"\n",
            "\"nowhere\"",
            "the cluster has no service `nowhere`",
        ),
        ("[[invariant]]\nchecker = \"linearizable\"\nmodel = \"queue\"\n", "\"queue\"", "unknown model"),
    ];
    for (text, at, what) in cases {
        let e = parse_declared(text).unwrap_err();
        assert!(e.message.contains(what), "{text}: {e}");
        assert_eq!(e.line, line_of(text, at), "{text}: {e}");
    }
}

#[test]
fn a_step_that_records_an_operation_is_checked_where_it_is_written() {
    let bad = |op: &str| {
        let text = format!(
            "{BASE}[[load.workload.flow]]\nname = \"w\"\n[[load.workload.flow.step]]\npath = \"/w\"\nop = {op}\n"
        );
        Scenario::parse(&text, &test_dir().join("t.toml")).unwrap_err()
    };
    let e = bad("{ f = \"add\", value = \"{{nope}}\" }");
    assert!(e.message.contains("unknown variable `{{nope}}`"), "{e}");
    let e = bad("{ f = \"add\", value = \"{{uniform 1 5}}\" }");
    assert!(e.message.contains("cannot draw"), "{e}");
    let e = bad("{ f = \"a b\" }");
    assert!(e.message.contains("names the operation"), "{e}");
    let e = bad("{ f = \"read\", result = \"x\" }");
    assert!(e.message.contains("op.result") && e.message.contains("not a JSON pointer"), "{e}");
    let e = bad("{ f = \"write\", fail = [\"teapot\"] }");
    assert!(e.message.contains("op.fail"), "{e}");
}

#[test]
fn an_ok_share_is_over_operations_a_step_records() {
    let s = parse_declared("[[slo]]\nthreshold = \"ok_share(add) >= 95%\"\nduring = \"10s..20s\"\n").unwrap();
    assert_eq!(s.slos().last().unwrap().threshold.op.as_deref(), Some("add"));
    let e = parse_declared("[[slo]]\nthreshold = \"ok_share(remove) >= 95%\"\n").unwrap_err();
    assert!(e.message.contains("no workload step records `f = \"remove\"`"), "{e}");
    assert_eq!(e.column, 13, "{e}");
}

#[test]
fn invariants_are_named_from_the_clusters_checks_file_with_their_final_reads() {
    let s = Scenario::parse(
        &format!("invariants = [\"balanced\", \"no_lost_acks\", \"balanced\"]\n{BASE}"),
        &test_dir().join("t.toml"),
    )
    .unwrap();
    let names: Vec<&str> = s.declared.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["balanced", "no_lost_acks"], "in the order named, once each");
    assert!(
        matches!(&s.declared[1].check, InvariantCheck::External { binary: true, settled: Some(_), .. }),
        "{:?}",
        s.declared[1]
    );
    // The cluster runs no mailer: that read is left out.
    let reads: Vec<&str> = s.final_reads.iter().map(|r| r.f.as_str()).collect();
    assert_eq!(reads, ["db-state"]);

    // A cluster file without a checks file: the scenario says where to declare them.
    let text = format!("invariants = [\"no_lost_acks\"]\n{BASE}").replace("cluster.toml", "bare.toml");
    let e = Scenario::parse(&text, &test_dir().join("t.toml")).unwrap_err();
    assert_eq!((e.line, e.column), (1, 15), "{e}");
    assert!(e.message.contains("declares no checks") && e.message.contains("checks = \"checks.toml\""), "{e}");
}

#[test]
fn an_ok_share_confirmed_by_a_final_read_names_one_the_scenario_takes() {
    let paid = "[[load.workload.flow]]\nname = \"buy\"\n[[load.workload.flow.step]]\npath = \"/buy\"\n\
        op = { f = \"buy\", result = \"\" }\n[[slo]]\nthreshold = 'ok_share(buy where /status == \"PAID\") >= 95%'\n";
    let ok = "confirm = { read = \"db-state\", items = \"/rows\", by = \"/id\" }\n";
    let named = |extra: &str| {
        Scenario::parse(&format!("invariants = [\"no_lost_acks\"]\n{BASE}{paid}{extra}"), &test_dir().join("t.toml"))
    };
    let s = named(ok).unwrap();
    let c = s.slos().iter().find_map(|s| s.threshold.confirm.clone()).expect("a confirm");
    assert_eq!((c.read.as_str(), c.items.as_str(), c.by.as_str()), ("db-state", "/rows", "/id"));
    // Without the invariants that take the store's state, nothing reads it.
    let e = Scenario::parse(&format!("{BASE}{paid}{ok}"), &test_dir().join("t.toml")).unwrap_err();
    assert!(e.message.contains("no [[final_read]] takes (taken: none)"), "{e}");
    let e = named("confirm = { read = \"db-state\", by = \"id\" }\n").unwrap_err();
    assert!(e.message.contains("confirm:"), "{e}");
    let e = parse("[[slo]]\nthreshold = \"p95 < 1s\"\nconfirm = { read = \"x\", by = \"/id\" }\n").unwrap_err();
    assert!(e.message.contains("goes with `ok_share(f where"), "{e}");
}

#[test]
fn resource_faults_parse_with_their_sizes_and_need_a_duration() {
    let s = parse(
        r#"
[[fault]]
node = "api-0"
op = "cpu"
attributes = { share = 0.2 }
at = "2s"
for = "5s"
[[fault]]
node = "db-0"
op = "memory"
attributes = { limit = "64MiB" }
at = "2s"
for = "5s"
[[fault]]
node = "db-1"
op = "disk_full"
attributes = { leave = "1MiB", size = "32MiB" }
at = "8s"
for = "5s"
"#,
    )
    .unwrap();
    use crate::cluster::NodeLimit;
    let limits: Vec<NodeLimit> = s.limits().into_iter().map(|(_, l)| l).collect();
    assert!(limits.contains(&NodeLimit::Cpu { share: 0.2 }));
    assert!(limits.contains(&NodeLimit::Memory { bytes: 64 << 20 }));
    assert!(limits.contains(&NodeLimit::DiskFull { leave: 1 << 20, size: 32 << 20 }));
    assert_eq!(s.limits().len(), 3);
    assert!(s.faults.iter().any(|f| f.label == "f1 api-0 cpu 20%"), "{:?}", s.faults);
}

#[test]
fn mistakes_in_resource_faults_point_at_their_op_and_say_what_to_give() {
    let fault = |op: &str, attrs: &str, dur: &str| {
        format!("[[fault]]\nnode = \"api-0\"\nop = \"{op}\"\n{attrs}at = \"1s\"\n{dur}")
    };
    let cases = [
        (fault("cpu", "", "for = \"1s\"\n"), "share of one core"),
        (fault("cpu", "attributes = { share = 0 }\n", "for = \"1s\"\n"), "above 0"),
        (fault("cpu", "attributes = { share = 0.2 }\n", ""), "`cpu` needs `for`"),
        (fault("cpu", "attributes = { quota = 3 }\n", "for = \"1s\"\n"), "takes attributes share, not `quota`"),
        (fault("memory", "attributes = { limit = \"1KiB\" }\n", "for = \"1s\"\n"), "at least 1.0 MiB"),
        (fault("memory", "attributes = { limit = \"lots\" }\n", "for = \"1s\"\n"), "not a size"),
        (fault("disk_full", "", "for = \"1s\"\n"), "bytes left free"),
        (
            fault("disk_full", "attributes = { leave = \"1GiB\" }\n", "for = \"1s\"\n"),
            "less than the data filesystem's",
        ),
        (fault("kill", "attributes = { share = 0.2 }\n", "for = \"1s\"\n"), "`attributes` only with cpu"),
    ];
    for (extra, what) in cases {
        let e = parse(&extra).unwrap_err();
        assert!(e.line >= 15, "{e}");
        assert!(e.message.contains(what), "{what}: {e}");
    }
}

#[test]
fn clock_faults_parse_with_offset_and_drift_and_a_jump_is_the_next_fault() {
    let s = parse(
        r#"
[[fault]]
node = "api-0"
op = "clock"
attributes = { offset = "+90s" }
at = "2s"
for = "5s"
[[fault]]
node = "api-0"
op = "clock"
attributes = { offset = "-30s", drift = "+50ms/s" }
at = "7s"
for = "5s"
"#,
    )
    .unwrap();
    use crate::cluster::ClockSkew;
    assert_eq!(s.faults[0].action, FaultAction::Clock(ClockSkew { offset_ms: 90_000, drift: 0.0 }));
    assert_eq!(s.faults[1].action, FaultAction::Clock(ClockSkew { offset_ms: -30_000, drift: 0.05 }));
    assert_eq!(s.faults[1].label, "f2 api-0 clock -30s drifting +50ms/s");
    assert_eq!(s.clock_nodes(), vec![NodeId::parse("api-0").unwrap()], "each node once");
    assert!(s.limits().is_empty(), "a clock fault is no resource fault");
}

#[test]
fn mistakes_in_clock_faults_point_at_their_op_and_say_what_to_give() {
    let fault =
        |attrs: &str, dur: &str| format!("[[fault]]\nnode = \"api-0\"\nop = \"clock\"\n{attrs}at = \"1s\"\n{dur}");
    let cases = [
        (fault("", "for = \"1s\"\n"), "needs attributes = { offset = \"+90s\" }"),
        (fault("attributes = { offset = \"+90s\" }\n", ""), "`clock` needs `for`"),
        (fault("attributes = { offset = \"soon\" }\n", "for = \"1s\"\n"), "not an offset like"),
        (fault("attributes = { offset = 90 }\n", "for = \"1s\"\n"), "a string like"),
        (fault("attributes = { offset = \"+400days\" }\n", "for = \"1s\"\n"), "more than a year"),
        (fault("attributes = { offset = \"+1s\", drift = \"+1s\" }\n", "for = \"1s\"\n"), "not a drift like"),
        (fault("attributes = { offset = \"+1s\", drift = \"+2s/s\" }\n", "for = \"1s\"\n"), "drifts more than"),
        (fault("attributes = { offset = \"+1s\", rate = 2 }\n", "for = \"1s\"\n"), "not `rate`"),
    ];
    for (extra, what) in cases {
        let e = parse(&extra).unwrap_err();
        // At the `op` value of the fault (BASE is 13 lines, then `[[fault]]` and `node`).
        assert_eq!((e.line, e.column), (16, 6), "{what}: {e}");
        assert!(e.message.contains(what), "{what}: {e}");
    }
    let overlapping =
        "[[fault]]\nnode = \"api-0\"\nop = \"clock\"\nattributes = { offset = \"+1s\" }\nat = \"1s\"\nfor = \"5s\"\n\
         [[fault]]\nnode = \"api-0\"\nop = \"clock\"\nattributes = { offset = \"+9s\" }\nat = \"3s\"\nfor = \"5s\"\n";
    assert!(parse(overlapping).unwrap_err().message.contains("same node at the same time"));
}
