//! DNS-rebinding protection: a browser page on another site must not reach a local
//! endpoint. Requests with an `Origin` header are refused unless it is a loopback origin
//! or one the operator allowed (`mcp.allowed_origins`).

/// Whether a request with this `Origin` may be served.
pub fn allowed(origin: &str, configured: &[String]) -> bool {
    let origin = origin.trim().trim_end_matches('/');
    if configured
        .iter()
        .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") || rest.contains('/') {
        return false;
    }
    let host = if let Some(v6) = rest.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, port)) if port.is_empty() || is_port(port) => return addr == "::1",
            _ => return false,
        }
    } else {
        match rest.split_once(':') {
            Some((host, port)) if is_port(port) => host,
            Some(_) => return false,
            None => rest,
        }
    };
    host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1"
}

fn is_port(s: &str) -> bool {
    s.strip_prefix(':').unwrap_or(s).parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::allowed;

    #[test]
    fn loopback_origins_pass_and_others_do_not() {
        for ok in [
            "http://localhost",
            "http://localhost:3000",
            "https://127.0.0.1:8080",
            "http://[::1]:5173",
            "http://LOCALHOST/",
        ] {
            assert!(allowed(ok, &[]), "{ok}");
        }
        for bad in [
            "http://evil.example.com",
            "http://localhost.evil.com",
            "http://127.0.0.1.nip.io",
            "null",
            "file://localhost",
            "http://localhost:99999",
            "http://[::2]:80",
        ] {
            assert!(!allowed(bad, &[]), "{bad}");
        }
    }

    #[test]
    fn configured_origins_pass() {
        let configured = vec!["https://app.example.com".to_string()];
        assert!(allowed("https://app.example.com", &configured));
        assert!(!allowed("https://other.example.com", &configured));
    }
}
