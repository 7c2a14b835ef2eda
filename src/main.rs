fn main() {
    let code = grove::run(std::env::args_os().collect());
    std::process::exit(code);
}
