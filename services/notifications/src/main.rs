//! The notifications service binary: configuration from the environment, then serve.

use std::process::ExitCode;

fn main() -> ExitCode {
    shop_kit::server::run_main("notifications", 7005, true, shop_notifications::build)
}
