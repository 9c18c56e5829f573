//! A real `redis-server` for tests: started on a free loopback port, stopped on drop.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or stopped) redis-server owned by one test.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    /// Starts redis-server on a free port and waits until it answers.
    pub fn start() -> RedisServer {
        let mut r = RedisServer {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        r.restart();
        r
    }

    /// The URL handoff connects to.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL: like a crash).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// (Re)starts the server on the same port and waits until it answers PING.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "yes"])
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (the test script installs it: apt-get install -y redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(c) = redis::Client::open(self.url()) {
                if let Ok(mut conn) = c.get_connection_with_timeout(Duration::from_millis(200)) {
                    if redis::cmd("PING").query::<String>(&mut conn).is_ok() {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            if TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// A synchronous connection for inspecting state.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Sentinel (redis-server --sentinel) monitoring a master as `mymaster`.
pub struct SentinelServer {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl SentinelServer {
    /// Starts a Sentinel on a free port, monitoring `master_port` on 127.0.0.1.
    pub fn start(master_port: u16) -> SentinelServer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {master_port} 1\nsentinel down-after-milliseconds mymaster 1000\n"
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(c) = redis::Client::open(format!("redis://127.0.0.1:{port}")) {
                if let Ok(mut conn) = c.get_connection_with_timeout(Duration::from_millis(200)) {
                    let r: redis::RedisResult<Vec<String>> = redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg("mymaster")
                        .query(&mut conn);
                    if r.is_ok_and(|v| v.len() == 2) {
                        break;
                    }
                }
            }
            assert!(Instant::now() < deadline, "redis sentinel did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        SentinelServer {
            port,
            child,
            _dir: dir,
        }
    }

    /// `redis://127.0.0.1:PORT` of this Sentinel.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for SentinelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
