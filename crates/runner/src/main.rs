// Until main wires the pipeline, the modules are only exercised by their tests.
#[allow(dead_code)]
mod cli;
#[allow(dead_code)]
mod config;

fn main() {}
