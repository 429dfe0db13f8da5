fn main() -> std::process::ExitCode {
    devmesh::cli::main()
}
