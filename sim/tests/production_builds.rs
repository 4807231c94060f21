//! The simulator stays out of production: no service links turmoil (the kit's seams
//! are plain indirections), only gauntlet-sim does.

use std::path::Path;
use std::process::Command;

fn normal_tree(package: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO"))
        .args(["tree", "-e", "normal", "--prefix", "none", "--offline", "-p", package])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo tree -p {package}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn no_service_depends_on_the_simulator() {
    for service in
        ["shop-kit", "shop-users", "shop-catalog", "shop-payments", "shop-orders", "shop-gateway", "shop-notifications"]
    {
        let tree = normal_tree(service);
        assert!(tree.contains("tokio v"), "{service}: not a real dependency tree:\n{tree}");
        assert!(!tree.contains("turmoil"), "{service} depends on turmoil:\n{tree}");
    }
    assert!(!normal_tree("gauntlet").contains("turmoil"), "the harness itself does not link the simulator");
    assert!(normal_tree("gauntlet-sim").contains("turmoil v"), "the check can see turmoil where it is");
}
