//! The orders service binary: configuration from the environment, then serve.

use std::process::ExitCode;

fn main() -> ExitCode {
    shop_kit::server::run_main("orders", 7003, true, shop_orders::build)
}
