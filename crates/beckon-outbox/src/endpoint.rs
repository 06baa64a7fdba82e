//! Where a destination may send. A site's administrator types the address, so the server must
//! not become their way into the machine's own network: unless the operator allows private
//! addresses (`[outbox] allow_private_addresses`, for a relay beside Beckon or a test), an
//! endpoint is `https` to a public host, checked when it is saved, and again when it is sent to
//! (a literal address in the URL, and every address its name resolves to).

use std::net::{IpAddr, SocketAddr};

use url::{Host, Url};

/// Whether `ip` is on the public internet: not loopback, private, link-local, shared (CGNAT),
/// unspecified, broadcast, multicast or documentation space, nor an IPv4 address of those
/// inside IPv6.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Checks an endpoint's address, returning it parsed, or what is wrong with it.
pub fn check(address: &str, allow_private: bool) -> Result<Url, String> {
    let text = address.trim();
    if text.len() > 2000 {
        return Err("the address is longer than 2000 characters".to_owned());
    }
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not an address: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{text:?} carries credentials; put them in the endpoint instead"
        ));
    }
    let host = url
        .host()
        .ok_or_else(|| format!("{text:?} names no host"))?;
    let private = match &host {
        Host::Ipv4(ip) => !is_public(IpAddr::V4(*ip)),
        Host::Ipv6(ip) => !is_public(IpAddr::V6(*ip)),
        Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost"
                || d.ends_with(".localhost")
                || d.ends_with(".internal")
                || d.ends_with(".local")
        }
    };
    match (url.scheme(), private, allow_private) {
        ("https", false, _) => Ok(url),
        ("https" | "http", true, true) => Ok(url),
        ("http", false, true) => Ok(url),
        (_, true, false) => Err(format!(
            "{text:?} is a private or local address; the server's operator can allow those \
             ([outbox] allow_private_addresses)"
        )),
        (scheme, ..) => Err(format!("{text:?} must be an https address, not {scheme}")),
    }
}

/// A resolver that answers only public addresses: a public name that resolves into the
/// machine's own network is refused at the moment of sending, not only when it was saved.
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_https_unless_the_operator_allows_private_addresses() {
        for ok in [
            "https://crm.example/hooks/beckon",
            "https://93.184.216.34/x",
            "https://[2606:4700::1]/",
        ] {
            assert!(check(ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "http://crm.example/hook",
            "https://127.0.0.1/",
            "https://localhost:9000/api/v1/sites",
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.1/",
            "https://192.168.1.2/",
            "https://100.64.0.1/",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://0.0.0.0/",
            "https://user:pass@crm.example/",
            "ftp://crm.example/",
            "not a url",
            // What a hand-written split once let through: the host is 127.0.0.2, not .1.
            "http://127.0.0.2:9\\@127.0.0.1/",
        ] {
            assert!(check(bad, false).is_err(), "{bad}");
        }
        assert!(check("http://127.0.0.1:9000/hook", true).is_ok());
        assert!(check("ftp://127.0.0.1/", true).is_err());
        // The backslash form parses to its real host: allowed only as that host.
        assert_eq!(
            check("http://127.0.0.2:9\\@127.0.0.1/", true)
                .unwrap()
                .host_str(),
            Some("127.0.0.2")
        );
    }
}
