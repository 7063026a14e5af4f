//! The process's TLS crypto provider.
//!
//! reqwest is built with `rustls-no-provider`, so the program chooses rustls's crypto
//! provider: ring. A process-wide default is the program's decision, not a library's:
//! the `runner` binary installs it first thing in `main`, and the libraries that build
//! HTTP clients (`source`, `sink`) never install it; they check [`is_installed`] and
//! return an error rather than let reqwest panic. Tests that build clients through those
//! libraries call [`install`] themselves (each test may run in its own process).
//!
//! rustls: <https://docs.rs/rustls/latest/rustls/#cryptography-providers>

/// Installs ring as the process's default crypto provider. Installing again is harmless.
pub fn install() {
    // `Err` only means a provider is installed already, which is what was wanted.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether a default crypto provider is installed (building an HTTP client needs one).
pub fn is_installed() -> bool {
    rustls::crypto::CryptoProvider::get_default().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_is_idempotent() {
        install();
        install();
        assert!(is_installed());
    }
}
