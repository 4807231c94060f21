//! The cluster file: the shop's own file parses into the expected plan, and each kind
//! of mistake is reported at its line and column with a hint.

use std::path::Path;

use gauntlet::cluster::spec::{Fill, Probe};
use gauntlet::cluster::{ClusterSpec, Edge, RunSpec};

fn shop_file() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../services/cluster.toml")
}

#[test]
fn the_shop_cluster_file_parses() {
    let spec = ClusterSpec::load(&shop_file()).unwrap();
    assert_eq!(spec.name, "shop");
    assert_eq!(spec.ingress, "gateway");
    let names: Vec<&str> = spec.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), 5);
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    for e in &spec.edges {
        assert!(pos(&e.to) < pos(&e.from), "provider {} starts before consumer {}", e.to, e.from);
    }
    assert!(spec.edges.contains(&Edge { from: "orders".into(), to: "payments".into() }));
    let orders = spec.service("orders").unwrap();
    assert_eq!(orders.run, RunSpec::Binary("shop-orders".into()));
    assert!(orders.database);
    assert_eq!(orders.env["SHOP_DEV_DEFAULTS"], "1");
    assert_eq!(spec.service("catalog").unwrap().env["SHOP_CATALOG_SEED_PRODUCTS"], "100");
    assert_eq!(spec.upstream_var("payments"), "SHOP_UPSTREAM_PAYMENTS");
    assert_eq!(spec.providers_of("orders").collect::<Vec<_>>(), vec!["catalog", "payments"]);
}

#[test]
fn the_events_cluster_file_adds_a_broker_node_behind_the_proxy() {
    let spec = ClusterSpec::load(&shop_file().with_file_name("cluster-events.toml")).unwrap();
    let broker = spec.service("broker").expect("a broker service");
    let RunSpec::Command(cmd) = &broker.run else { panic!("the broker is a command: {:?}", broker.run) };
    assert_eq!(cmd[0], "nats-server");
    for placeholder in ["{port}", "{data_dir}"] {
        assert!(cmd.iter().any(|a| a == placeholder), "the command fills in {placeholder}: {cmd:?}");
    }
    assert_eq!(broker.scheme, "nats");
    assert_eq!(broker.ready, Probe::Tcp);
    assert_eq!(broker.install.as_deref(), Some("apt-get install nats-server"));
    for (from, to) in [("orders", "broker"), ("notifications", "broker"), ("gateway", "notifications")] {
        assert!(spec.edges.contains(&Edge { from: from.into(), to: to.into() }), "edge {from}->{to}");
    }
    assert_eq!(spec.service("notifications").unwrap().run, RunSpec::Binary("shop-notifications".into()));
    let names: Vec<&str> = spec.services.iter().map(|s| s.name.as_str()).collect();
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(pos("broker") < pos("orders"), "the broker starts before its producers: {names:?}");
    // The default cluster has no broker, so the README's main command needs no nats-server.
    let default = ClusterSpec::load(&shop_file()).unwrap();
    assert!(default.service("broker").is_none());
    assert_eq!(default.service("orders").unwrap().ready, Probe::Http("/ready".into()));
}

#[test]
fn placeholders_are_filled_in_per_node() {
    let fill = Fill {
        host: "127.0.0.1".into(),
        port: 7010,
        data_dir: Path::new("/runs/r/data/broker-0").to_path_buf(),
        upstreams: [("db".to_string(), vec!["redis://127.0.0.1:21001".to_string(), "redis://127.0.0.1:21002".into()])]
            .into(),
    };
    let cmd = ["srv", "--port={port}", "{host}:{port}", "{data_dir}/store"];
    let filled: Vec<String> = cmd.iter().map(|a| fill.fill(a)).collect();
    assert_eq!(filled, ["srv", "--port=7010", "127.0.0.1:7010", "/runs/r/data/broker-0/store"]);
    // A provider's slots, and literal braces.
    let config = "{{\"db\": \"{upstream.db.host}:{upstream.db.port}\", \"all\": \"{upstream.db.urls}\", \"first\": \"{upstream.db.url}\"}}";
    assert_eq!(
        fill.fill(config),
        r#"{"db": "127.0.0.1:21001", "all": "redis://127.0.0.1:21001,redis://127.0.0.1:21002", "first": "redis://127.0.0.1:21001"}"#
    );
}

#[test]
fn a_config_file_template_is_read_with_the_file_and_checked_for_its_placeholders() {
    let dir = tempfile::tempdir().unwrap();
    let text = "name = \"c\"\ningress = \"a\"\nedges = [\"a->b\"]\n[services.a]\ncommand = [\"srv\", \"{data_dir}/a.conf\"]\nport = 7000\nfiles = { \"a.conf\" = \"a.conf.in\" }\nenv = { B = \"{upstream.b.url}\" }\n[services.b]\nbinary = \"y\"\nport = 7001\n";
    std::fs::write(dir.path().join("a.conf.in"), "upstream {upstream.b.host}:{upstream.b.port} {{ }}\n").unwrap();
    let spec = ClusterSpec::parse(text, &dir.path().join("c.toml")).unwrap();
    let a = spec.service("a").unwrap();
    assert_eq!(a.files, [("a.conf".to_string(), "upstream {upstream.b.host}:{upstream.b.port} {{ }}\n".to_string())]);
    // A provider the service does not call, a part that does not exist, a stray brace.
    for (template, what) in [
        ("{upstream.c.host}", "calls no `c`"),
        ("{upstream.b.address}", "host, port, url or urls"),
        ("a { b", "without its '}'"),
    ] {
        std::fs::write(dir.path().join("a.conf.in"), template).unwrap();
        let e = ClusterSpec::parse(text, &dir.path().join("c.toml")).unwrap_err().to_string();
        assert!(e.contains(":7:9:") && e.contains(what), "{e}");
    }
    let e = ClusterSpec::parse(&text.replace("a.conf.in", "missing.in"), &dir.path().join("c.toml")).unwrap_err();
    assert!(e.to_string().contains("missing.in"), "{e}");
    let e = ClusterSpec::parse(&text.replace("{upstream.b.url}", "{upstream.a.url}"), &dir.path().join("c.toml"))
        .unwrap_err();
    assert!(e.to_string().contains("calls no `a`"), "{e}");
}

const BASE: &str = r#"name = "c"
ingress = "a"
edges = ["a->b"]
[services.a]
binary = "x"
port = 7000
[services.b]
binary = "y"
port = 7001
"#;

/// Each mistake: the file text, the line:column expected, and words the message must hold.
const MISTAKES: &[(&str, &str, &str)] = &[
    (
        "unknown key",
        "name = \"c\"\ningress = \"a\"\n[services.a]\nbinary = \"x\"\nport = 7000\nreplica = 2\n",
        "6:1|unknown field `replica`",
    ),
    ("no binary or command", "name = \"c\"\n[services.a]\nport = 7000\n", "2:1|has no `binary` or `command`"),
    (
        "both binary and command",
        "name = \"c\"\n[services.a]\nbinary = \"x\"\ncommand = [\"y\"]\nport = 7000\n",
        "3:10|both `binary` and `command`",
    ),
    ("port zero", "name = \"c\"\n[services.a]\nbinary = \"x\"\nport = 0\n", "4:8|port 0"),
    ("port out of range", "name = \"c\"\n[services.a]\nbinary = \"x\"\nport = 70000\n", "4:8|"),
    (
        "too many replicas",
        "name = \"c\"\n[services.a]\nbinary = \"x\"\nport = 7000\nreplicas = 99\n",
        "5:12|replicas must be from 1 to 16",
    ),
    (
        "bad duration",
        "name = \"c\"\n[defaults]\nready_timeout = \"soon\"\n[services.a]\nbinary = \"x\"\nport = 7000\n",
        "3:17|is not a duration",
    ),
    (
        "path without slash",
        "name = \"c\"\n[services.a]\nbinary = \"x\"\nport = 7000\nhealth = \"health\"\n",
        "5:10|is not a path nor \"tcp\"",
    ),
    (
        "unknown command placeholder",
        "name = \"c\"\n[services.a]\ncommand = [\"srv\", \"--dir\", \"{datadir}\"]\nport = 7000\n",
        "3:11|unknown placeholder {datadir}",
    ),
    (
        "unclosed command placeholder",
        "name = \"c\"\n[services.a]\ncommand = [\"srv\", \"{port\"]\nport = 7000\n",
        "3:11|without its",
    ),
    (
        "bad scheme",
        "name = \"c\"\n[services.a]\nbinary = \"x\"\nport = 7000\nscheme = \"Nats://\"\n",
        "5:10|is not a URL scheme",
    ),
    (
        "install for a cargo binary",
        "name = \"c\"\n[services.a]\nbinary = \"x\"\nport = 7000\ninstall = \"apt-get install x\"\n",
        "5:11|applies only to a `command`",
    ),
    (
        "unknown ingress",
        "name = \"c\"\ningress = \"zz\"\n[services.a]\nbinary = \"x\"\nport = 7000\n",
        "2:11|ingress \"zz\"",
    ),
    (
        "bad service name",
        "name = \"c\"\n[services.Bad_Name]\nbinary = \"x\"\nport = 7000\n",
        "2:1|service name \"Bad_Name\"",
    ),
    ("no services", "name = \"c\"\n[services]\n", "2:1|at least one service"),
    (
        "bad env name",
        "name = \"c\"\n[services.a]\nbinary = \"x\"\nport = 7000\nenv = { lower = \"1\" }\n",
        "5:7|environment variable name \"lower\"",
    ),
    ("not toml", "name = \n", "1:8|"),
];

fn replace_edges(edges: &str) -> String {
    BASE.replace("edges = [\"a->b\"]", edges)
}

#[test]
fn each_mistake_is_reported_where_it_is() {
    let generated = [
        ("unknown service in an edge", replace_edges("edges = [\"a->zz\"]"), "3:10|unknown service \"zz\""),
        (
            "duplicate port",
            BASE.replace("port = 7001", "port = 7000"),
            "9:8|port 7000 of service \"b\" is already used by service \"a\"",
        ),
        ("cycle", replace_edges("edges = [\"a->b\", \"b->a\"]"), "3:10|cycle"),
        ("self edge", replace_edges("edges = [\"a->a\"]"), "3:10|to itself"),
        ("bad edge syntax", replace_edges("edges = [\"a=>b\"]"), "3:10|is not \"consumer->provider\""),
        ("duplicate edge", replace_edges("edges = [\"a->b\", \"a -> b\"]"), "3:18|listed twice"),
    ];
    let fixed = MISTAKES.iter().map(|(n, t, e)| (*n, t.to_string(), *e));
    let all: Vec<(&str, String, &str)> = fixed.chain(generated.iter().map(|(n, t, e)| (*n, t.clone(), *e))).collect();
    assert!(all.len() >= 10, "at least ten distinct mistakes");
    for (what, text, expect) in all {
        let (pos, words) = expect.split_once('|').unwrap();
        let err = ClusterSpec::parse(&text, Path::new("c.toml")).expect_err(what);
        let shown = err.to_string();
        assert!(shown.starts_with(&format!("c.toml:{pos}: ")), "{what}: expected at {pos}, got: {shown}");
        assert!(shown.contains(words), "{what}: expected {words:?} in: {shown}");
    }
}

#[test]
fn the_schema_describes_every_key() {
    let schema = gauntlet::cluster::spec::json_schema();
    let text = schema.to_string();
    for key in ["ingress", "edges", "replicas", "ready_timeout", "database", "binary", "command", "scheme", "install"] {
        assert!(text.contains(key), "schema lacks {key}");
    }
}

#[test]
fn the_shipped_schema_is_current() {
    let shipped = std::fs::read_to_string(shop_file().with_file_name("cluster.schema.json")).unwrap();
    let current = format!("{:#}\n", gauntlet::cluster::spec::json_schema());
    assert!(
        shipped == current,
        "services/cluster.schema.json is stale: regenerate it with `cargo run -p gauntlet -- schema cluster > services/cluster.schema.json`"
    );
}

#[test]
fn readiness_may_be_a_command_or_a_log_line() {
    let text = "name = \"c\"\ningress = \"pg\"\n[services.pg]\ncommand = [\"postgres\"]\nport = 5432\nready = [\"pg_isready\", \"-h\", \"{host}\", \"-p\", \"{port}\"]\n\
                [services.q]\ncommand = [\"q\"]\nport = 6000\nready = { log = \"Ready to accept connections\" }\n";
    let spec = ClusterSpec::parse(text, Path::new("c.toml")).unwrap();
    let pg = &spec.service("pg").unwrap().ready;
    assert_eq!(pg.target("127.0.0.1:5432"), r#"exec:["pg_isready","-h","127.0.0.1","-p","5432"]"#);
    assert_eq!(spec.service("q").unwrap().ready, Probe::Log("Ready to accept connections".into()));
    for (ready, what) in [
        ("[\"pg_isready\", \"{data_dir}\"]", "{host} and {port} only"),
        ("[]", "a program and its arguments"),
        ("{ line = \"x\" }", "{ log ="),
        ("3", "not a integer"),
    ] {
        let e =
            ClusterSpec::parse(&text.replace("{ log = \"Ready to accept connections\" }", ready), Path::new("c.toml"))
                .unwrap_err()
                .to_string();
        assert!(e.contains("c.toml:10:9:") && e.contains(what), "{ready}: {e}");
    }
}

#[test]
fn a_node_is_ready_when_its_command_exits_0_or_its_log_says_so() {
    use gauntlet::cluster::readiness::poll_ready;
    let dir = tempfile::tempdir().unwrap();
    let (log, marker) = (dir.path().join("node.log"), dir.path().join("up"));
    std::fs::write(&log, "starting\n").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let short = std::time::Duration::from_millis(300);
        // Not yet: the error says what the probe saw.
        let e = poll_ready("n-0", "log:accepting connections", short, &log, || None).await.unwrap_err().to_string();
        assert!(e.contains("no line of its log says \"accepting connections\""), "{e}");
        let test = format!(r#"exec:["test","-e","{}"]"#, marker.display());
        let e = poll_ready("n-0", &test, short, &log, || None).await.unwrap_err().to_string();
        assert!(e.contains("exited with"), "{e}");
        // Then the node gets there, while the probe polls.
        let (log2, marker2) = (log.clone(), marker.clone());
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            std::fs::write(&log2, "starting\nnow accepting connections on 5432\n").unwrap();
            std::fs::write(&marker2, "").unwrap();
        });
        let long = std::time::Duration::from_secs(5);
        poll_ready("n-0", "log:accepting connections", long, &log, || None).await.unwrap();
        poll_ready("n-0", &test, long, &log, || None).await.unwrap();
    });
}
