//! Where options come from: the command line, `ETCD_*` variables, or the YAML file.
//!
//! Each function returns the raw options plus the set of option names that were given
//! explicitly, because several etcd rules depend on "was this set" rather than on the
//! value (the default initial cluster, the advertise-client-urls requirement, warnings).

use std::any::TypeId;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, Command, CommandFactory, FromArgMatches};

use super::raw::RawConfig;
use super::values::{Bool, GoDuration, Members, UrlList};
use super::ConfigError;

/// Option names (without `--`) that were given explicitly.
pub(crate) type Explicit = BTreeSet<String>;

/// The clap command, with Go's boolean flag syntax: `--flag` means true, `--flag=false`
/// sets false, and `--flag false` is not accepted (Go's flag package works the same way).
pub(crate) fn command() -> Command {
    RawConfig::command()
        .bin_name("ferrocd")
        .next_line_help(true)
        // A repeated flag takes its last value, as with Go's flag package.
        .args_override_self(true)
        .mut_args(|arg| {
            let ty = arg.get_value_parser().type_id();
            if ty == TypeId::of::<Bool>() {
                return arg
                    .value_name("BOOL")
                    .num_args(0..=1)
                    .require_equals(true)
                    .default_missing_value("true");
            }
            let name = if ty == TypeId::of::<UrlList>() {
                "URLS"
            } else if ty == TypeId::of::<GoDuration>() {
                "DURATION"
            } else if ty == TypeId::of::<Members>() {
                "NAME=URL,..."
            } else if ty == TypeId::of::<PathBuf>() {
                "PATH"
            } else if [
                TypeId::of::<u64>(),
                TypeId::of::<u32>(),
                TypeId::of::<usize>(),
                TypeId::of::<i64>(),
            ]
            .iter()
            .any(|t| ty == *t)
            {
                "N"
            } else if arg
                .get_value_names()
                .and_then(|names| names.first())
                .is_some_and(|n| n.len() > 12)
            {
                "VALUE"
            } else {
                return arg;
            };
            arg.value_name(name)
        })
}

/// Go's flag package accepts `-name value` as well as `--name value`, and old etcd docs
/// use the single dash; rewrite those to the double-dash form clap understands.
pub(crate) fn normalize_args(cmd: &Command, args: &[String]) -> Vec<String> {
    let mut longs: HashSet<&str> = HashSet::from(["help", "version"]);
    for arg in cmd.get_arguments() {
        longs.extend(arg.get_long());
        longs.extend(arg.get_all_aliases().unwrap_or_default());
    }
    let mut out = Vec::with_capacity(args.len().max(1));
    out.push(args.first().cloned().unwrap_or_else(|| "ferrocd".into()));
    let mut rest = args.iter().skip(1);
    for arg in rest.by_ref() {
        if arg == "--" {
            out.push(arg.clone());
            break;
        }
        let name = arg
            .strip_prefix('-')
            .filter(|rest| !rest.starts_with('-'))
            .and_then(|rest| rest.split('=').next());
        if name.is_some_and(|n| n.len() > 1 && longs.contains(n)) {
            out.push(format!("-{arg}"));
        } else {
            out.push(arg.clone());
        }
    }
    out.extend(rest.cloned());
    out
}

/// Parses an argument vector into matches and raw options.
pub(crate) fn parse(
    cmd: &Command,
    argv: &[String],
) -> Result<(ArgMatches, RawConfig), ConfigError> {
    let matches = cmd
        .clone()
        .try_get_matches_from(argv)
        .map_err(ConfigError::from_clap)?;
    let raw = RawConfig::from_arg_matches(&matches).map_err(ConfigError::from_clap)?;
    Ok((matches, raw))
}

/// Long names of the flags that appear on the command line.
pub(crate) fn explicit_flags(cmd: &Command, matches: &ArgMatches) -> Explicit {
    cmd.get_arguments()
        .filter(|arg| matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine))
        .filter_map(|arg| arg.get_long().map(String::from))
        .collect()
}

/// `--initial-cluster-token` → `ETCD_INITIAL_CLUSTER_TOKEN`, etcd's `flags.FlagToEnv`.
pub(crate) fn env_key(long: &str) -> String {
    format!("ETCD_{}", long.replace('-', "_").to_ascii_uppercase())
}

/// Adds `ETCD_*` variables for flags not given on the command line, as etcd's
/// `SetFlagsFromEnv` does, and re-parses. Each variable is first checked on its own so a
/// bad value is reported with the variable's name, as etcd reports it.
pub(crate) fn apply_env(
    cmd: &Command,
    mut argv: Vec<String>,
    on_cmdline: &Explicit,
    env: &HashMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<(RawConfig, Explicit), ConfigError> {
    let mut explicit = on_cmdline.clone();
    let mut recognized: HashSet<String> = HashSet::from(["ETCD_CONFIG_FILE".to_string()]);
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version" | "config-file") {
            continue;
        }
        let key = env_key(long);
        let Some(value) = env.get(&key) else { continue };
        recognized.insert(key.clone());
        if value.is_empty() {
            continue;
        }
        if on_cmdline.contains(long) {
            // etcd refuses to start rather than guess which of the two the operator meant.
            return Err(ConfigError::Invalid(format!(
                "conflicting environment variable {key:?} is shadowed by corresponding \
                 command-line flag (either unset environment variable or disable flag)"
            )));
        }
        let flag = format!("--{long}={value}");
        if let Err(err) = cmd
            .clone()
            .try_get_matches_from([argv[0].clone(), flag.clone()])
        {
            return Err(ConfigError::InvalidEnv {
                key,
                value: value.clone(),
                reason: clap_reason(&err),
            });
        }
        argv.push(flag);
        explicit.insert(long.to_string());
    }
    if let Some(value) = env.get("ETCD_VERSION") {
        recognized.insert("ETCD_VERSION".into());
        warnings.push(format!(
            "cannot set special environment variable ETCD_VERSION={value}; it is ignored"
        ));
    }
    let mut unknown: Vec<(&String, &String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with("ETCD_") && !recognized.contains(*k))
        .collect();
    unknown.sort();
    for (key, value) in unknown {
        warnings.push(format!("unrecognized environment variable {key}={value}"));
    }
    let (_, raw) = parse(cmd, &argv)?;
    Ok((raw, explicit))
}

/// The part of a clap error that explains the value, without clap's usage footer.
fn clap_reason(err: &clap::Error) -> String {
    if let Some(source) = std::error::Error::source(err) {
        return source.to_string();
    }
    let text = err.render().to_string();
    let first = text.lines().next().unwrap_or("").trim();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// Reads the YAML config file. Empty strings count as "not set", as they do for etcd's
/// URL keys, so a copy of etcd's sample file (`data-dir:`, `discovery: ''`) loads cleanly.
pub(crate) fn load_file(
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<(RawConfig, Explicit), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadConfigFile {
        path: path.to_path_buf(),
        source,
    })?;
    let parse_err = |message: String| ConfigError::ParseConfigFile {
        path: path.to_path_buf(),
        message,
    };
    let mut doc: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| parse_err(e.to_string()))?;
    if doc.is_null() {
        doc = serde_yaml::Value::Mapping(Default::default());
    }
    let serde_yaml::Value::Mapping(map) = &mut doc else {
        return Err(parse_err(
            "the file must be a YAML mapping of etcd option names to values".into(),
        ));
    };
    blank_to_null(map);
    for block in [
        "client-transport-security",
        "peer-transport-security",
        "socket-options",
    ] {
        if let Some(serde_yaml::Value::Mapping(inner)) = map.get_mut(block) {
            blank_to_null(inner);
        }
    }
    let explicit: Explicit = map
        .iter()
        .filter(|(_, v)| !v.is_null())
        .filter_map(|(k, _)| k.as_str().map(String::from))
        .collect();
    let raw: RawConfig = match serde_yaml::from_value(doc.clone()) {
        Ok(raw) => raw,
        Err(err) => return Err(parse_err(locate_bad_key(&doc, err))),
    };
    for key in raw.unknown.keys() {
        warnings.push(format!(
            "config file {}: unknown key {key:?} is ignored (it is not an etcd 3.5 option)",
            path.display()
        ));
    }
    for (block, sec) in [
        ("client-transport-security", &raw.client_transport_security),
        ("peer-transport-security", &raw.peer_transport_security),
    ] {
        for key in sec.iter().flat_map(|s| s.unknown.keys()) {
            warnings.push(format!(
                "config file {}: unknown key {key:?} in {block} is ignored",
                path.display()
            ));
        }
    }
    Ok((raw, explicit))
}

fn blank_to_null(map: &mut serde_yaml::Mapping) {
    for (_, value) in map.iter_mut() {
        if value.as_str().is_some_and(|s| s.trim().is_empty()) {
            *value = serde_yaml::Value::Null;
        }
    }
}

/// Deserializing from a `Value` loses line numbers, so on error find the key whose value
/// fails on its own and name it.
fn locate_bad_key(doc: &serde_yaml::Value, err: serde_yaml::Error) -> String {
    if let serde_yaml::Value::Mapping(map) = doc {
        for (key, value) in map {
            let mut single = serde_yaml::Mapping::new();
            single.insert(key.clone(), value.clone());
            if let Err(e) = serde_yaml::from_value::<RawConfig>(serde_yaml::Value::Mapping(single))
            {
                let name = key
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| format!("{key:?}"));
                return format!("invalid value for {name:?}: {e}");
            }
        }
    }
    err.to_string()
}
