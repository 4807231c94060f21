use std::process::ExitCode;

fn main() -> ExitCode {
    shop_kit::server::run_main("gateway", 7000, false, shop_gateway::build)
}
