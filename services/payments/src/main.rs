use std::process::ExitCode;

fn main() -> ExitCode {
    shop_kit::server::run_main("payments", 7004, true, shop_payments::build)
}
