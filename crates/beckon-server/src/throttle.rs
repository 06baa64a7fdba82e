//! Rate limits: per client address (a tower layer, tower_governor, in front of every route but
//! the probes) and per site (governor's keyed limiter, checked by the events handler once the
//! site is known). Both live in this process. In a cluster the per-site limit is also shared
//! ([`Throttle::shared`]): the nodes count each site's batches together in Redis
//! ([`SharedSiteLimit`]), so the cluster, not each node, allows a site its rate.
//!
//! The client's address is the socket's peer, unless `trusted_proxy_header` names the header
//! a proxy in front of Beckon sets: a header any client can write is believed only when the
//! operator says a proxy writes it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderName, Request, Response};
use axum::response::IntoResponse;
use beckon_cluster::Bus;
use beckon_engine::SiteId;
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;
use tower_governor::governor::{GovernorConfig, GovernorConfigBuilder};
use tower_governor::key_extractor::KeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};

use crate::error::ApiError;
use crate::limits::Limits;
use crate::metrics;
use crate::shared_limit::{self, SharedSiteLimit};

/// How often the limiters forget addresses and sites that are back to a full burst, so
/// their memory follows the clients of the last minute, not every client ever seen.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The per-address layer's configuration.
pub type AddressLimit = GovernorConfig<ClientAddress, NoOpMiddleware>;

/// Both rate limits; `None` where the limit is off (a rate of 0).
#[derive(Clone)]
pub struct Throttle {
    per_address: Option<Arc<AddressLimit>>,
    per_site: Option<Arc<DefaultKeyedRateLimiter<SiteId>>>,
    /// The per-site rate, for the shared limit's allowance.
    per_site_per_second: u32,
    /// The per-site count shared with the cluster's other nodes, when there are any.
    shared: Option<SharedSiteLimit>,
}

impl Throttle {
    /// The limiters `limits` asks for; `forwarded` is the secret with which the cluster's
    /// nodes forward requests (and name the client they came from, which is limited here as it
    /// is at the node that forwarded it).
    pub fn new(limits: &Limits, forwarded: Option<&str>) -> Throttle {
        let per_address = quota(limits.per_ip_per_second, limits.per_ip_burst).map(|_| {
            let mut builder = GovernorConfigBuilder::default().key_extractor(ClientAddress {
                trusted_header: trusted_header(limits),
                forwarded: forwarded.map(str::to_owned),
            });
            builder
                .period(period(limits.per_ip_per_second))
                .burst_size(limits.per_ip_burst.max(1));
            Arc::new(builder.finish().expect("a nonzero period and burst"))
        });
        let per_site = quota(limits.per_site_per_second, limits.per_site_burst)
            .map(|q| Arc::new(RateLimiter::keyed(q)));
        Throttle {
            per_address,
            per_site,
            per_site_per_second: limits.per_site_per_second,
            shared: None,
        }
    }

    /// This throttle, with the per-site limit shared by every node on `bus` (the
    /// installation's Redis): `per_site_per_second` batches per second for the whole cluster,
    /// besides each node's own limit. Nothing changes when the per-site limit is off.
    pub fn shared(self, bus: &Bus) -> Throttle {
        let config = shared_limit::Config::per_second(self.per_site_per_second);
        self.with_shared(SharedSiteLimit::on_bus(bus, config))
    }

    /// This throttle, with the per-site limit also counted by `shared` (tests choose its
    /// windows and its connection); as [`Throttle::shared`] otherwise.
    pub fn with_shared(mut self, shared: SharedSiteLimit) -> Throttle {
        if self.per_site.is_some() {
            self.shared = Some(shared);
        }
        self
    }

    /// The per-address layer, refusing with JSON 429 and `Retry-After`; `None` when off.
    pub fn layer(&self) -> Option<GovernorLayer<ClientAddress, NoOpMiddleware, Body>> {
        let config = self.per_address.clone()?;
        Some(GovernorLayer::new(config).error_handler(refusal))
    }

    /// Takes one batch from `site`'s allowance, or says when to come back. With a shared
    /// limit, the batch must fit both the cluster's allowance for this window (as this node
    /// last heard it) and this node's own; only a batch let through is counted for the
    /// cluster, and one refused by the cluster takes nothing from this node's own allowance.
    pub fn check_site(&self, site: &SiteId) -> Result<(), ApiError> {
        let Some(limiter) = &self.per_site else {
            return Ok(());
        };
        if let Some(shared) = &self.shared
            && let Some(retry_after) = shared.refuses(site)
        {
            metrics::throttled_by_cluster();
            return Err(ApiError::Throttled {
                limit: "for this site",
                retry_after,
            });
        }
        limiter
            .check_key(site)
            .map_err(|not_until| ApiError::Throttled {
                limit: "for this site",
                retry_after: not_until.wait_time_from(limiter.clock().now()),
            })?;
        if let Some(shared) = &self.shared {
            shared.passed(site);
        }
        Ok(())
    }

    /// Forgets, every [`SWEEP_EVERY`], the keys whose allowance is full again, and, when the
    /// per-site limit is shared, syncs it ([`SharedSiteLimit::run`]), until `shutdown` is
    /// cancelled.
    pub async fn sweep(self, shutdown: CancellationToken) {
        let sync = self.shared.clone().map(|s| s.run(shutdown.clone()));
        let sweep = async {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                if let Some(config) = &self.per_address {
                    config.limiter().retain_recent();
                    config.limiter().shrink_to_fit();
                }
                if let Some(limiter) = &self.per_site {
                    limiter.retain_recent();
                    limiter.shrink_to_fit();
                }
            }
        };
        match sync {
            Some(sync) => {
                tokio::join!(sweep, sync);
            }
            None => sweep.await,
        }
    }
}

/// Finds the client's address for the per-address limit.
#[derive(Clone, Debug)]
pub struct ClientAddress {
    trusted_header: Option<HeaderName>,
    /// The cluster's forwarding secret: a request that carries it names its client in
    /// [`FORWARDED_CLIENT`].
    forwarded: Option<String>,
}

/// The header in which a node forwarding a request names the client it came from.
pub const FORWARDED_CLIENT: &str = "x-beckon-client";

impl KeyExtractor for ClientAddress {
    type Key = IpAddr;

    fn extract<T>(&self, req: &Request<T>) -> Result<IpAddr, GovernorError> {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let headers = req.headers();
        if let Some(secret) = &self.forwarded
            && headers
                .get(crate::placement::FORWARDED)
                .is_some_and(|v| crate::placement::same_secret(v.as_bytes(), secret.as_bytes()))
            && let Some(ip) = headers
                .get(FORWARDED_CLIENT)
                .and_then(|v| v.to_str().ok()?.parse().ok())
        {
            return Ok(ip);
        }
        // A request without a socket (a test calling the router directly) counts as one
        // client, not as an error.
        Ok(client_ip(headers, peer, self.trusted_header.as_ref())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
    }
}

/// The rule [`client_ip`] follows under `limits`, as a function, for other routers (the
/// admin side's sign-in throttle) that must find the client the same way.
pub fn client_ip_rule(
    limits: &Limits,
) -> impl Fn(&HeaderMap, Option<SocketAddr>) -> Option<IpAddr> + Send + Sync + 'static {
    let header = trusted_header(limits);
    move |headers, peer| client_ip(headers, peer, header.as_ref())
}

/// The client's address: from `trusted_header` when it is set and holds one, otherwise the
/// socket's peer. A proxy appends the address it saw to `X-Forwarded-For` (and `Forwarded`),
/// so the last entry is the one the trusted proxy wrote; earlier ones are the client's word.
pub fn client_ip(
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    trusted_header: Option<&HeaderName>,
) -> Option<IpAddr> {
    let forwarded = trusted_header.and_then(|name| {
        let value = headers.get_all(name).iter().next_back()?.to_str().ok()?;
        let last = value.rsplit(',').next()?.trim();
        if name.as_str() == "forwarded" {
            last.split(';')
                .find_map(|pair| pair.trim().strip_prefix("for="))
                .and_then(parse_ip)
        } else {
            parse_ip(last)
        }
    });
    forwarded.or(peer.map(|p| p.ip()))
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `"[::1]:80"`, `::1`.
fn parse_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
        })
}

fn trusted_header(limits: &Limits) -> Option<HeaderName> {
    let name = limits.trusted_proxy_header.as_deref()?;
    match HeaderName::try_from(name.trim().to_ascii_lowercase()) {
        Ok(name) => Some(name),
        Err(_) => {
            // Settings validate the name; an invalid one reaching here trusts no header.
            tracing::error!(header = name, "trusted_proxy_header is not a header name");
            None
        }
    }
}

/// A quota of `per_second` with a burst of `burst`, or `None` when the rate is 0 (off).
fn quota(per_second: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(burst.max(1)).expect("at least one");
    Some(Quota::per_second(rate).allow_burst(burst))
}

/// The interval after which one more request is allowed, for `per_second` (not 0).
fn period(per_second: u32) -> Duration {
    Duration::from_nanos((1_000_000_000 / u64::from(per_second.max(1))).max(1))
}

fn refusal(e: GovernorError) -> Response<Body> {
    match e {
        GovernorError::TooManyRequests { wait_time, .. } => ApiError::Throttled {
            limit: "from this address",
            retry_after: Duration::from_secs(wait_time),
        }
        .into_response(),
        GovernorError::UnableToExtractKey | GovernorError::Other { .. } => {
            ApiError::Unavailable(format!("the rate limiter failed: {e}")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: Option<&str>, value: &str, expect: &str) {
        let mut headers = HeaderMap::new();
        // What a client may forge: believed only when it is the trusted header.
        headers.insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
        let name = header.map(|h| HeaderName::try_from(h).unwrap());
        if let Some(name) = &name {
            headers.insert(name.clone(), value.parse().unwrap());
        }
        let peer: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let ip = client_ip(&headers, Some(peer), name.as_ref()).unwrap();
        assert_eq!(ip.to_string(), expect, "{header:?}: {value:?}");
    }

    #[test]
    fn the_address_comes_from_the_trusted_header_alone_and_its_last_entry() {
        check(None, "", "10.0.0.1");
        check(
            Some("x-forwarded-for"),
            "6.6.6.6, 203.0.113.9",
            "203.0.113.9",
        );
        check(Some("x-real-ip"), "203.0.113.7", "203.0.113.7");
        check(Some("x-real-ip"), "not an address", "10.0.0.1");
        check(
            Some("forwarded"),
            "for=6.6.6.6, for=\"[2001:db8::1]:443\";proto=https",
            "2001:db8::1",
        );
        check(Some("forwarded"), "for=203.0.113.5:99", "203.0.113.5");
    }
}
