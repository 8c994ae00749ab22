//! Value types shared by the command line, `ETCD_*` variables and the YAML file.
//!
//! Each type parses a string the way etcd's Go flag does (so `--x=v`, `ETCD_X=v` and
//! `x: v` in the file agree), and deserializes from YAML accepting the shapes etcd's
//! config file uses (integer nanoseconds for durations, comma-separated URL strings).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use url::{Host, Url};

/// A boolean spelled the way Go's `strconv.ParseBool` accepts it (`--flag=true`, `=1`, `=f`).
/// In YAML it also takes YAML 1.1 words (`yes`, `off`) because etcd's YAML reader does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bool(pub bool);

impl FromStr for Bool {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(Bool(true)),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(Bool(false)),
            _ => Err(format!("{s:?} is not a boolean (use true or false)")),
        }
    }
}

impl<'de> Deserialize<'de> for Bool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Scalar::deserialize(d)? {
            Scalar::Bool(b) => Ok(Bool(b)),
            Scalar::Int(0) => Ok(Bool(false)),
            Scalar::Int(1) => Ok(Bool(true)),
            Scalar::Str(s) => match s.as_str() {
                "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => Ok(Bool(true)),
                "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n" | "N" => Ok(Bool(false)),
                other => other.parse().map_err(de::Error::custom),
            },
            other => Err(de::Error::custom(format!("{other} is not a boolean"))),
        }
    }
}

/// A duration in Go's `time.ParseDuration` syntax (`5s`, `1h30m`, `1.5h`, `300ms`).
/// In YAML an integer means nanoseconds, which is how etcd's file stores durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GoDuration(pub Duration);

impl FromStr for GoDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_go_duration(s).map(GoDuration)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Scalar::deserialize(d)? {
            Scalar::Int(n) => u64::try_from(n)
                .map(|n| GoDuration(Duration::from_nanos(n)))
                .map_err(|_| de::Error::custom(format!("negative duration {n} is not allowed"))),
            Scalar::Str(s) => s.parse().map_err(de::Error::custom),
            other => Err(de::Error::custom(format!(
                "{other} is not a duration (use integer nanoseconds or a string like \"5s\")"
            ))),
        }
    }
}

/// Parses Go's duration syntax. Negative durations are refused: no etcd option means
/// anything useful with one, and `std::time::Duration` cannot hold it.
pub(crate) fn parse_go_duration(orig: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {orig:?}");
    let mut s = orig;
    let negative = s.starts_with('-');
    if let Some(rest) = s.strip_prefix('-').or_else(|| s.strip_prefix('+')) {
        s = rest;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &s[..int_len];
        s = &s[int_len..];
        let mut frac_part = "";
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &rest[..frac_len];
            s = &rest[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {orig:?}"));
        }
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let unit_ns: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("time: unknown unit {unit:?} in duration {orig:?}")),
        };
        let int_value: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut part = int_value.checked_mul(unit_ns).ok_or_else(invalid)?;
        // Keep 18 fractional digits at most: more cannot change a nanosecond count.
        let frac_digits = &frac_part[..frac_part.len().min(18)];
        if !frac_digits.is_empty() {
            let frac: u128 = frac_digits.parse().map_err(|_| invalid())?;
            part += frac * unit_ns / 10u128.pow(frac_digits.len() as u32);
        }
        total = total.checked_add(part).ok_or_else(invalid)?;
        if total > i64::MAX as u128 {
            return Err(invalid());
        }
    }
    if negative && total != 0 {
        return Err(format!("negative duration {orig:?} is not allowed"));
    }
    Ok(Duration::from_nanos(total as u64))
}

/// A comma-separated list of etcd URLs (`http://10.0.0.1:2379,http://127.0.0.1:2379`),
/// validated and de-duplicated like etcd's `UniqueURLs` flag. An empty string is an empty
/// list, as in etcd.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct UrlList(pub Vec<Url>);

impl FromStr for UrlList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut urls: Vec<Url> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let url = parse_etcd_url(part)?;
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
        Ok(UrlList(urls))
    }
}

impl<'de> Deserialize<'de> for UrlList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = StrOrSeq::deserialize(d)?.0.join(",");
        text.parse().map_err(de::Error::custom)
    }
}

/// Parses one URL with etcd's rules (`types.NewURL`): http or https, an explicit
/// `host:port`, and no path. Unix sockets, which etcd also takes, are refused by name.
pub(crate) fn parse_etcd_url(text: &str) -> Result<Url, String> {
    let text = text.trim();
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(format!("URL scheme must be http or https: {text}"));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "http" | "https" => {}
        "unix" | "unixs" => {
            return Err(format!(
                "unix socket URLs are not supported by ferrocd (URL scheme must be http or https): {text}"
            ))
        }
        _ => return Err(format!("URL scheme must be http or https: {text}")),
    }
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_len);
    if tail.starts_with('/') {
        return Err(format!("URL must not contain a path: {text}"));
    }
    if !tail.is_empty() {
        return Err(format!("URL must not contain a query or fragment: {text}"));
    }
    if authority.contains('@') {
        return Err(format!("URL must not contain user information: {text}"));
    }
    let port = if let Some(after_bracket) = authority.strip_prefix('[') {
        after_bracket.split_once("]:").map(|(_, port)| port)
    } else {
        authority
            .split_once(':')
            .filter(|(host, port)| !host.contains(':') && !port.contains(':'))
            .map(|(_, port)| port)
    };
    let port_ok = port.is_some_and(|p| !p.is_empty() && p.parse::<u16>().is_ok());
    if !port_ok {
        return Err(format!(
            "URL address does not have the form \"host:port\": {text}"
        ));
    }
    if authority.starts_with(':') {
        return Err(format!("URL has an empty host: {text}"));
    }
    Url::parse(text).map_err(|e| format!("invalid URL {text}: {e}"))
}

/// Formats a URL the way etcd prints it: `scheme://host:port`, port always present and no
/// trailing slash. `Url`'s own `Display` adds a `/` and drops default ports, which would
/// make member lists and cluster comparisons differ from etcd's.
pub(crate) fn url_to_string(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port_or_known_default() {
        Some(port) => format!("{}://{}:{}", url.scheme(), host, port),
        None => format!("{}://{}", url.scheme(), host),
    }
}

/// The socket address to bind for a listen URL. Listen URLs must name an IP address, or
/// `localhost`, which binds 127.0.0.1 (etcd refuses other host names with the same text).
pub(crate) fn bind_addr(url: &Url) -> Result<SocketAddr, String> {
    let ip = match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
        Some(Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
        _ => {
            return Err(format!(
                "expected IP in URL for binding ({})",
                url_to_string(url)
            ))
        }
    };
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("URL has no port: {}", url_to_string(url)))?;
    Ok(SocketAddr::new(ip, port))
}

/// Resolves a URL's host to one address (IPv4 preferred, as Go's resolver does) so two
/// spellings of the same peer (`localhost` and `127.0.0.1`) compare equal, like etcd's
/// `URLStringsEqual`. Used only when the plain strings already differ.
pub(crate) fn resolve_url(url: &Url) -> Result<String, String> {
    let host = url.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(0);
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("failed to resolve {}: {e}", url_to_string(url)))?
        .collect();
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .ok_or_else(|| format!("no address found for {}", url_to_string(url)))?;
    Ok(format!("{}://{}", url.scheme(), addr))
}

/// `--initial-cluster`: `name=URL` pairs separated by commas. A name may repeat to give a
/// member several peer URLs, exactly as in etcd.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Members(pub Vec<(String, Url)>);

impl FromStr for Members {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut members = Vec::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((name, url)) = entry.split_once('=') else {
                return Err(format!("entry {entry:?} must have the form name=URL"));
            };
            members.push((name.trim().to_string(), parse_etcd_url(url)?));
        }
        Ok(Members(members))
    }
}

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = StrOrSeq::deserialize(d)?.0.join(",");
        text.parse().map_err(de::Error::custom)
    }
}

/// Formats members as etcd prints an initial cluster: `a=http://h:1,b=http://h:2`.
pub(crate) fn members_to_string(members: &[(String, Url)]) -> String {
    members
        .iter()
        .map(|(name, url)| format!("{name}={}", url_to_string(url)))
        .collect::<Vec<_>>()
        .join(",")
}

/// A string-valued option that etcd files sometimes write as a bare number
/// (`auto-compaction-retention: 1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text(pub String);

impl FromStr for Text {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(Text(s.to_string()))
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Text(match Scalar::deserialize(d)? {
            Scalar::Str(s) => s,
            Scalar::Int(n) => n.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }))
    }
}

/// A list written as a comma-separated string on the command line, and as either a YAML
/// list or a comma-separated string in the file (`log-outputs: [stderr]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct StrList(pub Vec<String>);

impl FromStr for StrList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(StrList(
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect(),
        ))
    }
}

impl<'de> Deserialize<'de> for StrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let parts = StrOrSeq::deserialize(d)?.0;
        Ok(StrList(
            parts
                .iter()
                .flat_map(|p| p.split(','))
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect(),
        ))
    }
}

/// Any YAML scalar, so the types above can accept the loose spellings etcd files use.
enum Scalar {
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(n) => write!(f, "{n}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A string or a list of strings (joined by the caller).
struct StrOrSeq(Vec<String>);

impl<'de> Deserialize<'de> for StrOrSeq {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrOrSeq;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a comma-separated string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StrOrSeq, E> {
                Ok(StrOrSeq(vec![v.to_string()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<StrOrSeq, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    out.push(item);
                }
                Ok(StrOrSeq(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Implements `FromStr` and `Deserialize` (from a string) for a public option enum from a
/// table of spellings, so the flag, the variable and the file accept the same words.
macro_rules! keyword_enum {
    ($ty:ty, $what:literal, [$($word:literal => $variant:expr),+ $(,)?]) => {
        impl ::std::str::FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s.trim().to_ascii_lowercase().as_str() {
                    $($word => Ok($variant),)+
                    _ => Err(format!(
                        concat!("unknown ", $what, " {:?} (valid values: {})"),
                        s,
                        [$($word),+].join(", ")
                    )),
                }
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(<D::Error as ::serde::de::Error>::custom)
            }
        }
    };
}
pub(crate) use keyword_enum;
