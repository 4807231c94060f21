//! The external runtime: an already-running deployment is checked, not started; a
//! deployment that is not ready is reported; node faults are refused with a reason.

use std::path::Path;

use axum::routing::get;
use gauntlet::cluster::external::ExternalRuntime;
use gauntlet::cluster::ledger::Ledger;
use gauntlet::cluster::plan::{ClusterPlan, NodeId, Ports, ReplicaOverrides};
use gauntlet::cluster::{ClusterSpec, NodeOp, NodeState, Runtime, RuntimeError};

async fn server(ready: bool) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/ready",
        get(move || async move {
            if ready {
                (axum::http::StatusCode::OK, "ok")
            } else {
                (axum::http::StatusCode::SERVICE_UNAVAILABLE, "no")
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn spec(a: &[String], b: &str) -> ClusterSpec {
    let list = |v: &[String]| v.iter().map(|u| format!("{u:?}")).collect::<Vec<_>>().join(", ");
    let text = format!(
        "name = \"ext\"\ningress = \"a\"\nedges = [\"a->b\"]\n[defaults]\nready_timeout = \"1s\"\n[services.a]\nurls = [{}]\nport = 7000\n[services.b]\nurls = [{b:?}]\nport = 7001\n",
        list(a)
    );
    ClusterSpec::parse(&text, Path::new("ext.toml")).unwrap()
}

#[tokio::test]
async fn a_running_deployment_is_watched_not_started() {
    let (a0, a1, b) = (server(true).await, server(true).await, server(true).await);
    let dir = tempfile::tempdir().unwrap();
    let plan =
        ClusterPlan::new(spec(&[a0.clone(), a1], &b), dir.path(), Ports::Fixed, &ReplicaOverrides::new()).unwrap();
    let mut rt = ExternalRuntime::new(plan, Ledger::new(dir.path()), "ext", None).unwrap();
    rt.start(&|_| {}).await.unwrap();
    let status = rt.status();
    assert_eq!(status.len(), 3);
    assert!(status.iter().all(|n| n.state == NodeState::Ready), "{status:?}");
    assert_eq!(rt.ingress_urls()[0], a0);
    let err = rt.node_op(&NodeId { service: "b".into(), replica: 0 }, NodeOp::Kill).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Unsupported(_)), "{err}");
    assert_eq!(Ledger::new(dir.path()).entries().len(), 1);
    rt.teardown().await.unwrap();
    assert!(Ledger::new(dir.path()).entries().is_empty());
}

#[tokio::test]
async fn an_unready_deployment_is_reported() {
    let (a, b) = (server(true).await, server(false).await);
    let dir = tempfile::tempdir().unwrap();
    let plan = ClusterPlan::new(spec(&[a], &b), dir.path(), Ports::Fixed, &ReplicaOverrides::new()).unwrap();
    let mut rt = ExternalRuntime::new(plan, Ledger::new(dir.path()), "ext", None).unwrap();
    let err = rt.start(&|_| {}).await.unwrap_err();
    assert!(matches!(&err, RuntimeError::NotReady { node, .. } if node == "b-0"), "{err}");
    assert!(err.to_string().contains("503"), "{err}");
}

#[test]
fn a_service_without_urls_cannot_be_external() {
    let text = "name = \"x\"\n[services.a]\nbinary = \"a\"\nport = 7000\n";
    let spec = ClusterSpec::parse(text, Path::new("x.toml")).unwrap();
    let plan = ClusterPlan::new(spec, Path::new("/tmp"), Ports::Fixed, &ReplicaOverrides::new()).unwrap();
    let err = ExternalRuntime::new(plan, Ledger::new(Path::new("/tmp/none")), "x", None).err().unwrap();
    assert!(err.to_string().contains("has no `urls`"), "{err}");
    let bad = "name = \"x\"\n[services.a]\nurls = [\"ftp://h\"]\nport = 7000\n";
    let e = ClusterSpec::parse(bad, Path::new("x.toml")).unwrap_err();
    assert!(e.to_string().starts_with("x.toml:3:8: \"ftp://h\" is not a base URL"), "{e}");
}
