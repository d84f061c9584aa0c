//! The README cannot rot: every `shutter` command line in it parses (the way the shell
//! would split it), the demo commands of the tour run and do what the text says, the
//! peers file parses, and the systemd unit and the Kubernetes manifests parse and agree
//! with the commands and names the text gives.

mod cli_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use shutter_cli::peers::{PeersFile, host_names};
use shutter_cli::{Cli, Command};
use yaml_rust2::{Yaml, YamlLoader};

fn readme() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The contents of the fenced blocks opened with exactly "```LANG".
fn fenced(text: &str, lang: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_end() == format!("```{lang}") => current = Some(String::new()),
            Some(block) if line.starts_with("```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// Lines of a shell block with `\` continuations joined.
fn logical_lines(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut acc = String::new();
    for line in block.lines() {
        match line.trim_end().strip_suffix('\\') {
            Some(part) => acc.push_str(part),
            None => {
                acc.push_str(line);
                out.push(std::mem::take(&mut acc));
            }
        }
    }
    out
}

/// Splits like a POSIX shell for the README's needs: single and double quotes, `#`
/// comments at the start of a word; `|`, `;` or `&` outside quotes are refused (the
/// README's commands are single commands, and an unquoted `|` was a real bug).
fn shell_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some(x) => w.push(x),
                        None => return Err(format!("unclosed quote in {line:?}")),
                    }
                }
            }
            '#' if word.is_none() => break,
            '|' | ';' | '&' => return Err(format!("unquoted {c:?} in {line:?}")),
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// The `shutter` argv of a README command line, if it runs the binary.
fn shutter_argv(words: &[String]) -> Option<Vec<String>> {
    let words: Vec<&str> = words
        .iter()
        .map(String::as_str)
        .skip_while(|w| w.contains('=') && !w.starts_with('-'))
        .collect();
    let rest = match words.as_slice() {
        ["shutter", rest @ ..] => rest,
        ["cargo", "run", "--release", "--", rest @ ..] => rest,
        _ => return None,
    };
    let mut argv = vec!["shutter".to_string()];
    argv.extend(rest.iter().map(|s| s.to_string()));
    Some(argv)
}

fn parses(argv: &[String]) -> Result<Cli, String> {
    match Cli::try_parse_from(argv) {
        Ok(cli) => Ok(cli),
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => Err("help".to_string()),
        Err(e) => Err(format!("{argv:?}: {e}")),
    }
}

#[test]
fn every_shutter_command_in_the_readme_parses() {
    let text = readme();
    let mut checked = 0;
    for block in fenced(&text, "sh") {
        for line in logical_lines(&block) {
            let words = shell_words(&line).unwrap_or_else(|e| panic!("README: {e}"));
            let Some(argv) = shutter_argv(&words) else {
                continue;
            };
            match parses(&argv) {
                Ok(_) => {}
                Err(e) if e == "help" => {}
                Err(e) => panic!("README command does not parse: {line}\n{e}"),
            }
            checked += 1;
        }
    }
    // The opening, the tour, the node section and the operations section.
    assert!(checked >= 13, "only {checked} commands found");
}

#[test]
fn the_readme_peers_file_parses() {
    let text = readme();
    let blocks = fenced(&text, "toml");
    assert!(!blocks.is_empty(), "no toml block");
    for b in blocks {
        let f = PeersFile::parse(&b, Path::new("README.md peers.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{b}"));
        assert_eq!(f.key_file.as_deref(), Some(Path::new("cluster.key")));
    }
}

#[test]
fn the_systemd_unit_parses_and_runs_a_node() {
    let text = readme();
    let units = fenced(&text, "ini");
    assert_eq!(units.len(), 1, "one unit");
    let mut section = String::new();
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for line in units[0].lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not KEY=VALUE: {line}"));
        assert!(!section.is_empty(), "{line} outside a section");
        keys.push((section.clone(), k.to_string(), v.to_string()));
    }
    let get = |s: &str, k: &str| {
        keys.iter()
            .find(|(a, b, _)| a == s && b == k)
            .map(|(_, _, v)| v.clone())
            .unwrap_or_else(|| panic!("[{s}] {k} missing"))
    };
    assert_eq!(get("Service", "KillSignal"), "SIGTERM", "graceful stop");
    assert_eq!(get("Install", "WantedBy"), "multi-user.target");
    let exec = get("Service", "ExecStart").replace("%i", "0").replace(
        "${CREDENTIALS_DIRECTORY}",
        "/run/credentials/shutter@0.service",
    );
    let mut argv = shell_words(&exec).unwrap();
    assert!(argv[0].ends_with("/shutter"), "{exec}");
    argv[0] = "shutter".into();
    let cli = parses(&argv).unwrap();
    let Command::Node(node) = cli.command else {
        panic!("ExecStart runs a node: {exec}");
    };
    assert_eq!(node.id, 0);
    // The credential systemd hands over is the key the node uses.
    let (cred_name, _) = get("Service", "LoadCredential")
        .split_once(':')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .unwrap();
    assert_eq!(
        node.key.key_file.unwrap(),
        Path::new("/run/credentials/shutter@0.service").join(cred_name)
    );
    assert!(node.metrics.is_some() && node.data_dir.is_some());
}

fn s<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {y:?}"))
}

#[test]
fn the_kubernetes_manifests_parse_and_agree() {
    let text = readme();
    let blocks = fenced(&text, "yaml");
    assert_eq!(blocks.len(), 1, "one manifest block");
    let docs = YamlLoader::load_from_str(&blocks[0]).unwrap_or_else(|e| panic!("YAML: {e}"));
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(k))
            .unwrap_or_else(|| panic!("no {k}"))
    };
    let (svc, cm, sts) = (kind("Service"), kind("ConfigMap"), kind("StatefulSet"));
    for d in [svc, cm, sts] {
        assert!(d["apiVersion"].as_str().is_some() && d["metadata"]["name"].as_str().is_some());
    }
    // A headless Service that names the pods, and the StatefulSet that uses it.
    let service = s(&svc["metadata"]["name"], "service name");
    assert_eq!(s(&svc["spec"]["clusterIP"], "clusterIP"), "None");
    assert_eq!(
        svc["spec"]["publishNotReadyAddresses"].as_bool(),
        Some(true)
    );
    assert_eq!(s(&sts["spec"]["serviceName"], "serviceName"), service);
    let set = s(&sts["metadata"]["name"], "statefulset name");
    let replicas = sts["spec"]["replicas"].as_i64().unwrap();
    let labels = &sts["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels, &sts["spec"]["selector"]["matchLabels"]);
    assert_eq!(&svc["spec"]["selector"], labels);

    // The peers file names every pod through the headless service, id = ordinal.
    let peers_text = s(&cm["data"]["peers.toml"], "peers.toml");
    let names = host_names(peers_text);
    assert_eq!(names.len() as i64, replicas, "{peers_text}");
    for (id, name) in &names {
        assert_eq!(
            name,
            &format!("{set}-{}.{service}:7000", id.0),
            "{peers_text}"
        );
    }
    // It parses once the names resolve (here: distinct loopback addresses).
    let mut resolved = peers_text.to_string();
    for i in 0..replicas {
        resolved = resolved.replace(
            &format!("{set}-{i}.{service}:"),
            &format!("127.0.0.{}:", i + 1),
        );
    }
    let peers = PeersFile::parse(&resolved, Path::new("configmap peers.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(peers.nodes.len() as i64, replicas);

    // The container runs a node whose id is the pod's ordinal and whose files are where
    // the volumes are mounted.
    let pod = &sts["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let env = container["env"].as_vec().unwrap();
    let index = env
        .iter()
        .find(|e| e["name"].as_str() == Some("POD_INDEX"))
        .expect("POD_INDEX");
    assert_eq!(
        s(&index["valueFrom"]["fieldRef"]["fieldPath"], "fieldPath"),
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
    let mut argv = vec!["shutter".to_string()];
    for a in container["args"].as_vec().unwrap() {
        argv.push(s(a, "arg").replace("$(POD_INDEX)", "2"));
    }
    let Command::Node(node) = parses(&argv).unwrap().command else {
        panic!("the container runs a node: {argv:?}");
    };
    assert_eq!(node.id, 2);
    let mounts = container["volumeMounts"].as_vec().unwrap();
    let mount_of = |name: &str| {
        mounts
            .iter()
            .find(|m| m["name"].as_str() == Some(name))
            .map(|m| s(&m["mountPath"], "mountPath").to_string())
            .unwrap_or_else(|| panic!("no mount {name}"))
    };
    assert_eq!(node.peers, PathBuf::from(mount_of("peers")));
    assert_eq!(node.data_dir, Some(PathBuf::from(mount_of("data"))));
    let key = peers.key_file.expect("key_file");
    assert!(key.starts_with(mount_of("key")), "{key:?}");
    let metrics = node.metrics.expect("--metrics");
    let ports = container["ports"].as_vec().unwrap();
    let port_of = |name: &str| {
        ports
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_i64())
            .unwrap_or_else(|| panic!("no port {name}"))
    };
    assert_eq!(i64::from(metrics.port()), port_of("metrics"));
    assert_eq!(i64::from(node.listen.unwrap().port()), port_of("peer"));
    assert_eq!(
        s(
            &container["readinessProbe"]["httpGet"]["path"],
            "probe path"
        ),
        "/metrics"
    );
    // The data volume is per pod.
    let claims = sts["spec"]["volumeClaimTemplates"].as_vec().unwrap();
    assert!(
        claims
            .iter()
            .any(|c| c["metadata"]["name"].as_str() == Some("data"))
    );
}

/// The tour's demo commands run as written (in a scratch directory) and do what the text
/// around them says.
#[test]
fn the_tour_demo_commands_run() {
    let text = readme();
    // The blocks that run the demo from the repository: the opening one and the tour's.
    let tour: String = fenced(&text, "sh")
        .into_iter()
        .filter(|b| b.contains("cargo run --release -- "))
        .collect();
    let dir = cli_support::temp_dir("readme-tour");
    let mut ran = 0;
    for line in logical_lines(&tour) {
        let words = shell_words(&line).unwrap();
        let Some(argv) = shutter_argv(&words) else {
            continue;
        };
        let mut cmd = cli_support::shutter();
        cmd.current_dir(&dir);
        let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
        let out = cli_support::run_command(cmd, &args, Duration::from_secs(180));
        let (stdout, stderr) = cli_support::text(&out);
        assert!(out.status.success(), "{line}\n{stdout}\n{stderr}");
        if line.contains("--partition") {
            // "abort, never lie": some snapshots abort, none is inconsistent.
            let aborted: u64 = stdout
                .lines()
                .find_map(|l| l.trim_start().strip_prefix("aborted"))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(|| panic!("no aborted row: {stdout}"));
            assert!(aborted > 0, "{stdout}");
        }
        ran += 1;
    }
    assert_eq!(ran, 5, "{tour}");
    for f in [
        "report/report.json",
        "report/summary.json",
        "report/snapshot.hgrm",
    ] {
        assert!(dir.join(f).is_file(), "{f} written");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shell_splitting_catches_what_broke_the_readme() {
    assert_eq!(
        shell_words("shutter demo --partition '2s..4s:0,1|2,3'  # comment").unwrap(),
        ["shutter", "demo", "--partition", "2s..4s:0,1|2,3"]
    );
    assert!(shell_words("shutter demo --partition 2s..4s:0,1|2,3").is_err());
}

/// The simulator example in the README is, byte for byte, a test that runs in CI
/// (`snapshot/sim/tests/readme_relay.rs`), so what it shows compiles and passes.
#[test]
fn simulator_example_is_a_test_that_runs() {
    let blocks = fenced(&readme(), "rust,ignore");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sim/tests/readme_relay.rs");
    let test = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        blocks.contains(&test),
        "README's rust,ignore blocks differ from {}; copy the file into the README",
        path.display()
    );
}
