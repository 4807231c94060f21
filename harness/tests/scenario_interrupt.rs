//! Ctrl-C in the middle of a fault: `gauntlet run` rolls every fault back, tears the
//! cluster down and leaves nothing running: no toxic, no proxy, no process, no ledger.

mod scenario_common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gauntlet::cluster::ledger::Ledger;
use gauntlet::faults::client::ToxiproxyClient;
use gauntlet::faults::ProxyServer;
use scenario_common::{alive, binaries, scenario_file, workspace};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_mid_fault_rolls_back_and_leaves_nothing_running() {
    binaries();
    let dir = tempfile::tempdir().unwrap();
    // A Toxiproxy outside the run, so the test can look at it before and after.
    let proxy = ProxyServer::start("127.0.0.1:0", 9).await.unwrap();
    let api = ToxiproxyClient::new(proxy.url());
    let body = "[cluster]\nfile = \"CLUSTER\"\n\
                [load]\nworkload = \"WORKLOAD\"\nschedule = { mode = \"constant\", rate = 4, duration = \"90s\" }\n\
                [[fault]]\nedge = \"orders->payments\"\ntoxic = \"latency\"\nattributes = { latency = \"100ms\" }\nat = \"2s\"\nfor = \"60s\"\n\
                [[fault]]\nnode = \"users-0\"\nop = \"pause\"\nat = \"2s\"\nfor = \"60s\"\n\
                [[slo]]\nthreshold = \"availability >= 0%\"\n";
    let file = scenario_file(dir.path(), "interrupted", body);
    let runs = dir.path().join("runs");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .args(["run", "--profile", "debug", "--toxiproxy", &proxy.url(), "--runs"])
        .arg(&runs)
        .arg(&file)
        .current_dir(workspace())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut log = String::new();
    let mut applied = 0;
    while applied < 2 {
        assert!(Instant::now() < deadline, "the faults were never applied:\n{log}");
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => {
                if line.contains(" applied f") {
                    applied += 1;
                }
                log.push_str(&line);
                log.push('\n');
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(e) => panic!("gauntlet run ended early ({e}):\n{log}"),
        }
    }
    // Mid-fault: the toxic is on the edge and users-0 is frozen.
    let toxics = api.toxics("orders-0__payments__0").await.unwrap();
    assert_eq!(toxics.len(), 1, "{toxics:?}");
    let entry = Ledger::new(&runs).live().pop().expect("the run's ledger entry");
    let pids: Vec<u32> = entry.processes.iter().map(|p| p.pid).collect();
    assert_eq!(pids.len(), 5);
    let users = entry.nodes.iter().find(|n| n.id == "users-0").unwrap();
    assert_eq!(users.state, gauntlet::cluster::NodeState::Paused);

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "gauntlet run did not end after SIGINT:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    };
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
        log.push_str(&line);
        log.push('\n');
    }
    assert_eq!(exit.code(), Some(3), "an interrupted run is not a verdict:\n{log}");
    for label in ["rolled back f1 orders->payments latency", "rolled back f2 users-0 pause"] {
        assert!(log.contains(label), "expected `{label}`:\n{log}");
    }
    assert!(log.contains("cluster is down"), "{log}");
    let left = api.proxies().await.unwrap();
    assert!(left.is_empty(), "the run's proxies outlived it: {:?}", left.keys().collect::<Vec<_>>());
    for pid in pids {
        assert!(!alive(pid), "pid {pid} outlived the run");
    }
    assert!(Ledger::new(&runs).entries().is_empty(), "the ledger entry is removed");
    proxy.shutdown().await;
}
