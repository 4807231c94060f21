use std::process::ExitCode;

fn main() -> ExitCode {
    shop_kit::server::run_main("users", 7001, true, shop_users::build)
}
