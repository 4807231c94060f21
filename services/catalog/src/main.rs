use std::process::ExitCode;

fn main() -> ExitCode {
    shop_kit::server::run_main("catalog", 7002, true, shop_catalog::build)
}
