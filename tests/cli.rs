//! The `handoff` command: config and rules checks, key generation, JWKS export.
//! Bad files get a clear message naming the file, the key (or line) and the reason,
//! and a non-zero exit — never a panic.

use std::process::Command;

fn handoff(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(args)
        .env("HANDOFF_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn no_panic(stderr: &str) {
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn shipped_examples_are_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    let (code, out, err) = handoff(&[
        "config",
        "check",
        &format!("{root}/deploy/examples/handoff.toml"),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok"));
    let (code, out, err) = handoff(&[
        "rules",
        "check",
        &format!("{root}/deploy/examples/rules.toml"),
    ]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn broken_configs_are_refused_with_file_key_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("", "server.public_host"),
        ("[server]\npublic_host = \"x\"\n", "upstream"),
        ("[server]\npublic_host = \"x\"\n[upstream]\naddress = \"idp:notaport\"\n", "upstream.address"),
        ("[server]\npublic_host = \"x\"\nthreads = \"many\"\n", "3:11"),
        ("[server]\npublic_host = \"x\"\n[upstream]\naddress = \"a:1\"\n[store]\nkind = \"etcd\"\n", "store.kind"),
        ("[server]\npublic_host = \"x\"\n[upstream]\naddress = \"a:1\"\n[admin]\nlisten = \"0.0.0.0:9\"\n", "admin.listen"),
        ("\u{feff}[[[\n", "1:"),
        ("[server]\npublic_host = \"x\"\n[upstream]\naddress = \"a:1\"\n[assertion]\nkey_file = \"missing.pem\"\n", ""),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&p, text).unwrap();
        let (code, _, err) = handoff(&["config", "check", p.to_str().unwrap()]);
        no_panic(&err);
        assert_eq!(code, 1, "{text:?} was accepted");
        assert!(err.contains(&format!("c{i}.toml")), "names the file: {err}");
        assert!(err.contains(key), "names {key}: {err}");
    }
    // Invalid UTF-8 and a missing file.
    let p = dir.path().join("bin.toml");
    std::fs::write(&p, b"\xff\xfe\x00garbage").unwrap();
    let (code, _, err) = handoff(&["config", "check", p.to_str().unwrap()]);
    no_panic(&err);
    assert_eq!(code, 1);
    let (code, _, err) = handoff(&["config", "check", "/nonexistent/handoff.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read"));
    // Running with a broken config fails the same way, before listening.
    let (code, _, err) = handoff(&["--config", dir.path().join("c0.toml").to_str().unwrap()]);
    no_panic(&err);
    assert_eq!(code, 1);
}

/// `config check` reports every error of a file, one per line, not only the first.
#[test]
fn config_check_prints_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("two.toml");
    std::fs::write(
        &p,
        "[server]\npublic_host = \"x\"\nthreads = 0\n[upstream]\naddress = \"a:1\"\n[store]\nkind = \"etcd\"\n",
    )
    .unwrap();
    let (code, _, err) = handoff(&["config", "check", p.to_str().unwrap()]);
    no_panic(&err);
    assert_eq!(code, 1);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("two.toml: ")).collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("two.toml: server.threads: must be between 1 and 256"),
        "{err}"
    );
    assert!(lines[1].contains("two.toml: store.kind: \"etcd\""), "{err}");
}

/// Issue 16, defect 3: two listeners on one address (the admin listener on the
/// public one's port, a wildcard overlapping a specific address, two TLS
/// listeners) are refused, naming both keys; distinct ports are fine.
#[test]
fn listeners_sharing_an_address_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[server]\npublic_host = \"x\"\n";
    let cases = [
        (
            "listen = [\"0.0.0.0:8080\"]\n[upstream]\naddress = \"a:1\"\n[admin]\nlisten = \"127.0.0.1:8080\"\n",
            Some(("admin.listen", "server.listen[0]")),
        ),
        (
            "listen = [\"127.0.0.1:8080\", \"[::]:8080\"]\n[upstream]\naddress = \"a:1\"\n",
            Some(("server.listen[1]", "server.listen[0]")),
        ),
        (
            "listen = [\"127.0.0.1:8080\"]\n[upstream]\naddress = \"a:1\"\n[admin]\nlisten = \"127.0.0.1:8080\"\n",
            Some(("admin.listen", "server.listen[0]")),
        ),
        (
            "listen = [\"0.0.0.0:8080\"]\n[upstream]\naddress = \"a:1\"\n[admin]\nlisten = \"127.0.0.1:9090\"\n",
            None,
        ),
        (
            "listen = [\"127.0.0.1:0\"]\n[upstream]\naddress = \"a:1\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            None,
        ),
    ];
    for (i, (text, clash)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("l{i}.toml"));
        std::fs::write(&p, format!("{base}{text}")).unwrap();
        let (code, out, err) = handoff(&["config", "check", p.to_str().unwrap()]);
        no_panic(&err);
        match clash {
            Some((key, other)) => {
                assert_eq!(code, 1, "{text:?} was accepted: {out}");
                assert!(
                    err.contains(&format!("l{i}.toml: {key}: ")),
                    "names {key}: {err}"
                );
                assert!(err.contains(other), "names {other}: {err}");
            }
            None => assert_eq!(code, 0, "{text:?} was refused: {err}"),
        }
    }
}

#[test]
fn broken_rules_are_refused_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("rules.toml");
    std::fs::write(
        &p,
        "[web.\"w\"]\nsession_idle = \"2h\"\nsession_absolute = \"1h\"\nbogus_key = 1\n",
    )
    .unwrap();
    let (code, _, err) = handoff(&["rules", "check", p.to_str().unwrap()]);
    no_panic(&err);
    assert_eq!(code, 1);
    assert!(err.contains("rules.toml:"), "{err}");
    assert!(err.contains("bogus_key"), "{err}");
}

#[test]
fn keygen_writes_a_private_key_and_jwks_exports_its_public_half() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let (code, out, err) = handoff(&["keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (code, _, err) = handoff(&["keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(code, 1, "refuses to overwrite");
    assert!(err.contains("refusing"));
    let cfg = dir.path().join("h.toml");
    std::fs::write(&cfg, "[server]\npublic_host = \"login.example\"\n[upstream]\naddress = \"127.0.0.1:3000\"\n[assertion]\nkey_file = \"k.pem\"\n").unwrap();
    let (code, out, err) = handoff(&["--config", cfg.to_str().unwrap(), "jwks"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["keys"][0]["crv"], "Ed25519");
    assert!(v["keys"][0].get("d").is_none());
    let pem = std::fs::read_to_string(&key).unwrap();
    assert!(!out.contains(pem.lines().nth(1).unwrap()));
}

#[test]
fn rules_explain_prints_the_decision_and_exits_by_verdict() {
    let root = env!("CARGO_MANIFEST_DIR");
    let rules = format!("{root}/deploy/examples/rules.toml");
    let base = [
        "rules",
        "explain",
        rules.as_str(),
        "--native-client",
        "com.example.mobile",
        "--web-client",
        "example-web",
        "--mint-ip",
        "203.0.113.7",
    ];
    let (code, out, err) =
        handoff(&[&base[..], &["--redeem-ip", "203.0.113.7", "--at", "12:00"]].concat());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("verdict: ALLOWED"), "{out}");
    assert!(
        out.contains("session_absolute") && out.contains("30m"),
        "{out}"
    );
    let (code, out, _) = handoff(&[&base[..], &["--redeem-ip", "198.51.100.1"]].concat());
    assert_eq!(code, 1);
    assert!(out.contains("binding_mismatch"), "{out}");
    let (code, _, err) =
        handoff(&[&base[..], &["--redeem-ip", "203.0.113.7", "--at", "25:99"]].concat());
    assert_eq!(code, 2);
    no_panic(&err);
    let (code, _, _) = handoff(&[
        "rules",
        "explain",
        "/nonexistent.toml",
        "--native-client",
        "a",
        "--web-client",
        "b",
        "--mint-ip",
        "1.1.1.1",
        "--redeem-ip",
        "1.1.1.1",
    ]);
    assert_eq!(code, 2);
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// The real binary: SIGHUP reloads the rules without a restart; SIGTERM stops it.
#[test]
fn sighup_reloads_the_rules_of_a_running_handoff() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.path().join("rules.toml"),
        "[native.\"a\"]\ncan_create_session_transfer_token = true\nallowed_web_clients = [\"w\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("h.toml"),
        format!("[server]\nlisten = [\"127.0.0.1:{port}\"]\npublic_host = \"login.test\"\n[upstream]\naddress = \"127.0.0.1:9\"\n[rules]\nfile = \"rules.toml\"\nwatch_interval = \"0s\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["--config", dir.path().join("h.toml").to_str().unwrap()])
        .env("HANDOFF_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let admin_addr = format!("127.0.0.1:{admin}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let sha = |body: &str| {
        body.split("\"sha256\":\"")
            .nth(1)
            .map(|s| s[..64].to_string())
    };
    let first = loop {
        if let Some(b) = http_get(&admin_addr, "/rules") {
            if let Some(s) = sha(&b) {
                break s;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "handoff did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    std::fs::write(
        dir.path().join("rules.toml"),
        "[native.\"b\"]\ncan_create_session_transfer_token = true\nallowed_web_clients = [\"w\"]\n",
    )
    .unwrap();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let second = loop {
        let b = http_get(&admin_addr, "/rules").unwrap_or_default();
        if let Some(s) = sha(&b).filter(|s| *s != first) {
            assert!(b.contains("\"trigger\":\"sighup\""), "{b}");
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_ne!(first, second);
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    no_panic(&err);
    assert!(status.success() || status.code().is_some(), "{status:?}");
}
